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
Ironic to fill, served once by metalctl's boot service at a one-time URL. The kickstart
keeps Ironic's ``%pre``/``%onerror``/final ``%post`` heartbeats and also calls back to
metalctl's boot service with the same one-time token as the PXE path: that is how the
host keys arrive (trust on first boot) and how the installer's own error reaches the
node's result.

Exposure, stated plainly: Ironic copies ``ks_template`` and the rendered ``ks.cfg`` into
its ``http_root`` (``<http_url>/<node uuid>/ks.cfg``), readable on the provisioning
network, as it does for its own agent token; the callback token therefore has the same
exposure as Ironic's agent token, and stops opening anything when the install ends.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from metalctl.errors import InputError, MetalctlError
from metalctl.provision.bootstate import ACTIVE, FAILED, INSTALLED, TIMEOUT, BootFiles

if TYPE_CHECKING:
    from metalctl.provision.stage import _Install

LOG = logging.getLogger(__name__)

#: Ironic states from which ``active`` starts a deploy (``deploy failed``: a redo)
DEPLOYABLE = ("available", "deploy failed")
FOLLOWABLE = ("deploying", "wait call-back")


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
    ]


def _wait_available(inst: _Install, uuid: str) -> str:
    """``manageable`` → ``provide`` → ``available`` (automated cleaning may run)."""
    ironic = inst.inputs.ironic
    ironic.set_provision_state(uuid, "provide")
    deadline = inst.clock() + 600
    while inst.clock() < deadline:
        node = ironic.node(uuid)
        state = node["provision_state"]
        if state == "available":
            return state
        if state in ("clean failed", "manageable") and node.get("last_error"):
            raise MetalctlError(f"{inst.node.name}: Ironic: provide ended {state}: "
                                f"{node['last_error']}")
        time.sleep(inst.opts.poll_s)
    raise MetalctlError(f"{inst.node.name}: Ironic did not make the node available in 600 s")


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
        token = boot.add_install(name, inst.node.mac, inst.prep.kickstart,
                                 BootFiles(d.kernel, d.ramdisk, d.stage2),
                                 inst.opts.deadline_s, replace=True)
        ks_url = f"{boot.url}/ks/{name}?token={token.reveal()}"
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
    deadline = inst.clock() + max(120.0, inst.opts.ssh_wait_s)
    while inst.clock() < deadline:
        current = ironic.node(uuid)
        state = current["provision_state"]
        if state == "active":
            boot.state.event(name, "ironic-active", "")
            return INSTALLED
        if state == "deploy failed":
            inst.reason = (f"Ironic: deploy failed after the install ended: "
                           f"{current.get('last_error') or 'no reason given'}")
            return FAILED
        time.sleep(inst.opts.poll_s)
    inst.reason = f"Ironic did not reach active after the install ended (still {state})"
    return TIMEOUT
