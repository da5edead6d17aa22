"""``provision --via ironic``: Ironic's ``anaconda`` deploy interface does the deploy.

Ironic is the source of truth for deploys, so metalctl does not re-implement one: it sets
the node's ``ipxe`` boot and ``anaconda`` deploy interfaces, ``instance_info``
(``image_source``, ``kernel``, ``ramdisk``, ``stage2``, ``ks_template``) and
``driver_info`` (``deploy_kernel``/``deploy_ramdisk``: the ``ipxe`` interface validates
them although anaconda never boots them), asks for ``active`` and follows Ironic's
states: ``deploying``, ``wait call-back``, ``active``, or ``deploy failed`` with
``last_error``.

``ks_template`` is the node's kickstart as metalctl rendered it, with Ironic's own
``{{ ks_options.* }}`` (agent token, heartbeat URL, image URL, config drive) left for
Ironic to fill, served once by metalctl's boot service at a one-time URL (a kickstart
ticket only Ironic is given; HEAD does not use it up). The kickstart keeps Ironic's
``%pre``/``%onerror``/final ``%post`` heartbeats and also calls back to metalctl's boot
service with the callback token minted as the conductor fetched it: that is how the
host keys arrive (trust on first boot) and how the installer's own error reaches the
node's result.

Exposure, stated plainly: Ironic copies ``ks_template`` and the rendered ``ks.cfg`` into
its ``http_root`` (``<http_url>/<node uuid>/ks.cfg``), readable on the provisioning
network, as it does for its own agent token; the callback token therefore has the same
exposure as Ironic's agent token. What holds it back: the install binds to the first
callback's address, which must be the one DHCP gave the node's MAC when the boot service
knows the leases (``metalctl serve --dnsmasq-conf``); callbacks from anywhere else are
refused and recorded, and a second set of host keys fails the node.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from metalctl import poll
from metalctl.errors import InputError, MetalctlError, WaitTimeout
from metalctl.provision.bootstate import ACTIVE, FAILED, INSTALLED, TIMEOUT, BootFiles

if TYPE_CHECKING:
    from metalctl.provision.stage import _Install

LOG = logging.getLogger(__name__)

#: Ironic states from which ``active`` starts a deploy (``deploy failed``: a redo)
DEPLOYABLE = ("available", "deploy failed")
FOLLOWABLE = ("deploying", "wait call-back")
#: how long ``provide`` (automated cleaning) may take before a deploy; not from the
#: budget yet (issue 20 asks for that): kept at the value it always had
PROVIDE_TIMEOUT_S = 600.0


def _patch(inst: _Install, ks_url: str) -> list[dict[str, Any]]:
    d = inst.inputs.ironic_deploy
    assert d is not None
    return [
        {"op": "add", "path": "/boot_interface", "value": d.boot_interface},
        {"op": "add", "path": "/deploy_interface", "value": d.deploy_interface},
        {"op": "add", "path": "/driver_info/deploy_kernel", "value": d.deploy_kernel},
        {"op": "add", "path": "/driver_info/deploy_ramdisk", "value": d.deploy_ramdisk},
        {"op": "add", "path": "/instance_info/image_source", "value": d.image_source},
        {"op": "add", "path": "/instance_info/kernel", "value": d.kernel},
        {"op": "add", "path": "/instance_info/ramdisk", "value": d.ramdisk},
        {"op": "add", "path": "/instance_info/stage2", "value": d.stage2},
        {"op": "add", "path": "/instance_info/ks_template", "value": ks_url},
        # Ironic's deploy validation wants it (partition images); the kickstart itself
        # lays the disk out, so it is the node's smallest disk as its BMC reported it
        {"op": "add", "path": "/instance_info/root_gb", "value": _root_gb(inst)},
        # the firmware the machine has: Ironic 39 defaults to UEFI and would switch a BIOS
        # machine's boot mode (on a machine without UEFI firmware, the power-on fails)
        *([{"op": "add", "path": "/instance_info/capabilities",
            "value": {"boot_mode": mode}}] if (mode := _boot_mode(inst)) else []),
    ]


def _boot_mode(inst: _Install) -> str | None:
    d = inst.inputs.ironic_deploy
    if d is not None and d.boot_mode:
        return d.boot_mode
    seen = (inst.node.record.boot_mode or "").lower()
    return {"legacy": "bios", "bios": "bios", "uefi": "uefi"}.get(seen)


def _root_gb(inst: _Install) -> int:
    d = inst.inputs.ironic_deploy
    if d is not None and d.root_gb:
        return d.root_gb
    sizes = [disk.size_gib for disk in inst.node.record.hardware.disks if disk.size_gib]
    return max(1, int(min(sizes))) if sizes else 10


def _wait_available(inst: _Install, uuid: str) -> str:
    """``manageable`` → ``provide`` → ``available`` (automated cleaning may run)."""
    ironic = inst.inputs.ironic
    ironic.set_provision_state(uuid, "provide")

    def node() -> dict[str, Any]:
        current = ironic.node(uuid)
        state = current["provision_state"]
        if state in ("clean failed", "manageable") and current.get("last_error"):
            raise MetalctlError(f"{inst.node.name}: Ironic: provide ended {state}: "
                                f"{current['last_error']}")
        return current

    try:
        poll.wait_for(node, ready=lambda n: n["provision_state"] == "available",
                      timeout_s=PROVIDE_TIMEOUT_S, interval_s=inst.opts.poll_s,
                      what=f"{inst.node.name}: Ironic provide", clock=inst.clock)
    except WaitTimeout:
        raise MetalctlError(f"{inst.node.name}: Ironic did not make the node available in "
                            f"{PROVIDE_TIMEOUT_S:.0f} s") from None
    return "available"


def deploy(inst: _Install) -> str:
    """Start (or resume) the node's anaconda deploy and follow it; return the install
    state (``installed``, ``failed`` with ``inst.reason``, ``timeout``)."""
    ironic, boot, name = inst.inputs.ironic, inst.inputs.boot, inst.node.name
    uuid = inst.node.ironic_uuid
    if not uuid:
        raise InputError(f"node {name}", "ironic_uuid", "not enrolled in Ironic; run "
                                                        "`metalctl enroll` (or use --via pxe)")
    node = ironic.node(uuid)
    state = node["provision_state"]
    existing = boot.install(name)
    ours = existing is not None and existing.state in (ACTIVE, INSTALLED) and not inst.opts.redo
    if ours and existing is not None and (state in FOLLOWABLE or state == "active"):
        inst.event("resumed", {"ironic_state": state, "install_state": existing.state})
        inst.start_at = existing.created_at
    else:
        if state == "manageable":
            state = _wait_available(inst, uuid)
        if state == "active" and inst.opts.redo:
            verb = "rebuild"
        elif state in DEPLOYABLE:
            verb = "active"
        else:
            raise MetalctlError(f"{name}: Ironic has the node {state!r}; a deploy starts "
                                f"from {' or '.join(DEPLOYABLE)} (or manageable)")
        d = inst.inputs.ironic_deploy
        assert d is not None
        # Ironic's conductor fetches the kickstart, not the machine: the ticket goes to
        # Ironic, and the install binds to the machine's address at its first callback
        ticket = boot.add_install(name, inst.node.mac, inst.prep.kickstart,
                                  BootFiles(d.kernel, d.ramdisk, d.stage2),
                                  inst.opts.deadline_s, replace=True, fetcher="ironic")
        ks_url = f"{boot.url}/ks/{name}?ticket={ticket.reveal()}"
        ironic.update_node(uuid, _patch(inst, ks_url))
        inst.event("started", {"via": "ironic", "ironic_uuid": uuid, "verb": verb,
                               "template": inst.inputs.template})
        ironic.set_provision_state(uuid, verb)
        boot.state.event(name, "power", f"Ironic: {verb} requested")

    def ironic_failed() -> str | None:
        current = ironic.node(uuid)
        if current["provision_state"] == "deploy failed":
            return f"Ironic: deploy failed: {current.get('last_error') or 'no reason given'}"
        return None

    result = inst.follow_boot_service(ironic_state=ironic_failed)
    if result != INSTALLED:
        # the installer's own message (our %onerror callback) is the better reason;
        # Ironic's last_error when the installer never got to say anything
        record = boot.install(name)
        if record is not None and record.error:
            inst.reason = record.error
        elif result == FAILED and not inst.reason:
            inst.reason = ironic_failed()
        return result
    # metalctl's end callback comes just before Ironic's end heartbeat; Ironic then
    # powers off, sets the boot device to disk and powers on: wait for ``active``
    try:
        current = poll.wait_for(lambda: ironic.node(uuid),
                                ready=lambda n: n["provision_state"] in ("active",
                                                                         "deploy failed"),
                                timeout_s=max(120.0, inst.opts.ssh_wait_s),
                                interval_s=inst.opts.poll_s, clock=inst.clock,
                                what=f"{name}: Ironic active after the install")
    except WaitTimeout as exc:
        inst.reason = (f"Ironic did not reach active after the install ended (still "
                       f"{exc.last['provision_state']})")
        return TIMEOUT
    if current["provision_state"] == "deploy failed":
        inst.reason = (f"Ironic: deploy failed after the install ended: "
                       f"{current.get('last_error') or 'no reason given'}")
        return FAILED
    boot.state.event(name, "ironic-active", "")
    return INSTALLED
