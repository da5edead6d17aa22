"""The PXE path's power control: a one-time network boot and a power cycle through each
node's own BMC (:mod:`metalctl.bmc.power`: Redfish boot source override via sushy, IPMI
``bootdev`` via pyghmi), with the credential set discovery recorded for that BMC."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import InputError
from metalctl.provision.stage import NodeInstall


@dataclass(frozen=True)
class BmcPower:
    """:class:`~metalctl.provision.stage.PowerControl` over the nodes' BMCs.

    Attributes:
        credentials: the credential set of a node's BMC (by the name discovery recorded).
        verify: TLS verification for Redfish (True, or a CA bundle path).
        budget: timeouts and retries of each BMC conversation.
    """

    credentials: Callable[[NodeInstall], CredentialSet | None]
    verify: bool | str = True
    budget: Budget = Budget()
    #: the Ironic client (or a function returning it): a node enrolled there is powered
    #: through Ironic, which owns its power state (its power-state sync powers off a node
    #: switched on behind its back, seen killing lab installs mid-way)
    ironic: Any = None

    def network_boot_once(self, node: NodeInstall) -> str:
        if node.ironic_uuid and self.ironic is not None:
            return self._through_ironic(node)
        from metalctl.bmc import power  # the BMC boundary; imported when a machine is powered

        creds = self.credentials(node)
        if creds is None:
            raise InputError(f"node {node.name}", "credentials",
                             "discovery recorded no credential set for its BMC")
        done = power.network_boot(node.record, creds, self.verify, self.budget)
        return (f"{done.address}: was {done.power_before}; {' '.join(done.actions)} "
                f"({done.duration_s:.1f} s)")

    def _through_ironic(self, node: NodeInstall) -> str:
        ironic = self.ironic() if callable(self.ironic) and not hasattr(self.ironic, "node") \
            else self.ironic
        uuid = node.ironic_uuid or ""
        before = ironic.node(uuid).get("power_state") or "unknown"
        ironic.set_boot_device(uuid, "pxe", persistent=False)
        verb = "reboot" if before == "power on" else "on"
        ironic.set_power_state(uuid, verb)
        return f"Ironic {uuid}: was {before}; boot device pxe (once), power {verb}"
