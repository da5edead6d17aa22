"""BIOS attributes of a Redfish ComputerSystem, through sushy (DSP0266 ``Bios`` and
``Bios/Settings``; the Attribute Registry when served). Every request goes through the
guarded transport of :mod:`metalctl.bmc.redfish`."""

from __future__ import annotations

from typing import Any

import requests
import sushy
from sushy import exceptions as sushy_exc

from metalctl.bmc import probe
from metalctl.bmc import redfish as rf
from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import BiosError, BiosUnsupported
from metalctl.model.bios import BiosState
from metalctl.model.node import DiscoveryRecord, Protocol


class RedfishBios:
    """BIOS of one Redfish ComputerSystem, through sushy."""

    def __init__(self, record: DiscoveryRecord, creds: CredentialSet, verify: bool | str,
                 budget: Budget) -> None:
        if record.protocol != Protocol.REDFISH or not record.system_id:
            raise BiosUnsupported(node=record.name or record.address,
                                  reason="BIOS settings need Redfish; this node's BMC "
                                         f"speaks {record.protocol.value} only")
        self.record, self.verify, self.budget = record, verify, budget
        self.label = record.name or f"{record.address}{record.system_id}"
        self.base_url = record.endpoint.url  # type: ignore[union-attr]  # Redfish: set
        with probe.warnings_silenced(verify):
            self.root, _ = rf.login(self.base_url, record.address, creds, verify, budget)
            try:
                self.system = self.root.get_system(record.system_id)
                self.bios = self.system.bios
            except sushy_exc.MissingAttributeError:
                self.close()
                raise BiosError(node=self.label,
                                reason="the BMC exposes no Bios resource") from None
            except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
                self.close()
                raise rf.translate(exc, record.address) from None

    def close(self) -> None:
        """Log out of the BMC (see :func:`metalctl.bmc.redfish.logout`)."""
        with probe.warnings_silenced(self.verify):
            rf.logout(self.root, self.record.address)
        self.root = None

    def __enter__(self) -> RedfishBios:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, fn: Any) -> Any:
        with probe.warnings_silenced(self.verify):
            try:
                return fn()
            except (sushy_exc.SushyError, requests.exceptions.RequestException) as exc:
                raise rf.translate(exc, self.record.address) from None

    def state(self) -> BiosState:
        """Current and pending attributes (fresh from the BMC) and its registry."""
        def read() -> BiosState:
            # fresh resources: sushy caches the pending-settings sub-resource
            self.system = self.root.get_system(self.record.system_id)
            self.bios = self.system.bios
            current = dict(self.bios.attributes or {})
            try:
                pending = dict(self.bios.pending_attributes or {})
            except (sushy_exc.SushyError, AttributeError):
                pending = {}
            # some BMCs (sushy-tools among them) echo every attribute as "pending":
            # only values that differ from current are really pending
            pending = {k: v for k, v in pending.items() if current.get(k) != v}
            return BiosState(current=current, pending=pending, registry=self._registry())
        return self._call(read)

    def _registry(self) -> dict[str, dict[str, Any]] | None:
        try:
            reg = self.bios.get_attribute_registry()
        except Exception:  # noqa: BLE001 - a registry is optional (DSP0266); absence is fine
            return None
        if reg is None or not getattr(reg, "registry_entries", None):
            return None
        out = {}
        for a in reg.registry_entries.attributes or []:
            allowed = [v.get("ValueName") for v in (a.allowable_values or [])
                       if isinstance(v, dict)]
            out[a.name] = {"read_only": bool(a.read_only), "allowed": [v for v in allowed if v]}
        return out

    def write(self, changes: dict[str, str]) -> None:
        """PATCH the settings resource, applied on the next reset where supported."""
        def patch() -> None:
            apply_time = None
            try:
                if sushy.APPLY_TIME_ON_RESET in (self.bios.supported_apply_times or []):
                    apply_time = sushy.APPLY_TIME_ON_RESET
            except AttributeError:
                apply_time = None
            self.bios.set_attributes(changes, apply_time=apply_time)
        self._call(patch)

    def reboot(self) -> None:
        """Reset the system (or power it on) so pending settings apply."""
        def reset() -> None:
            self.system.refresh(force=True)
            if self.system.power_state == sushy.POWER_STATE_ON:
                self.system.reset_system(sushy.RESET_FORCE_RESTART)
            else:
                self.system.reset_system(sushy.RESET_ON)
        self._call(reset)
