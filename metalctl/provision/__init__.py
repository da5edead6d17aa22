"""Stage 4 — provision the OS through kickstart over PXE, and follow it to ``installed``.

:func:`provision` (:mod:`~metalctl.provision.stage`) renders and validates every node's
kickstart first (:mod:`~metalctl.provision.kickstart`: the node's profile plan, the site,
pykickstart for the target OS, metalctl's own ``bootloader --append`` checks), then
installs each node through Ironic's ``anaconda`` deploy interface
(:mod:`~metalctl.provision.via_ironic`) or metalctl's own boot service
(:mod:`~metalctl.provision.bootservice`: iPXE per MAC, one-time-token kickstarts, install
callbacks; :mod:`~metalctl.provision.dnsmasq` writes dnsmasq's configuration;
:mod:`~metalctl.provision.power` the BMC's one-time network boot), and follows it to
``installed``, ``failed`` or ``timeout``. The host keys the installer's ``%post`` sends
with the node's token go into metalctl's known_hosts
(:mod:`~metalctl.provision.knownhosts`), and the install is proven over SSH with them.
"""

from metalctl.provision.stage import (
    IronicDeploy,
    NodeInstall,
    PowerControl,
    ProvisionInputs,
    ProvisionOptions,
    ProvisionResult,
    provision,
)

__all__ = ["IronicDeploy", "NodeInstall", "PowerControl", "ProvisionInputs",
           "ProvisionOptions", "ProvisionResult", "provision"]
