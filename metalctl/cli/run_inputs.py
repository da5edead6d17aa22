"""What ``metalctl run`` builds for the stages from the rack file and the command line:
credential sets, TLS, Ironic, the SSH policy, and the provision stage's inputs (the boot
service runs in this process when the rack's ``provision.serve`` says where)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from metalctl.audit.run import AuditOptions
from metalctl.budget import Budget
from metalctl.cli import common
from metalctl.cli.provision import _serve_addr, default_known_hosts
from metalctl.cli.serve import default_state_dir
from metalctl.errors import InputError
from metalctl.handoff import HandoffOptions, HandoffSite
from metalctl.handoff import load_site as load_handoff_site
from metalctl.harden import HardenOptions
from metalctl.hosts import load_site
from metalctl.pki import SitePKI
from metalctl.provision import kickstart as ks
from metalctl.provision.bootservice import BootService
from metalctl.provision.bootstate import BootFiles
from metalctl.provision.power import BmcPower
from metalctl.provision.stage import NodeInstall, ProvisionInputs, ProvisionOptions
from metalctl.run import StageInputs
from metalctl.run.rackfile import STAGES, Rack


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def _waivers(rack: Rack) -> list[Any]:
    """The rack's ``audit.waivers`` file, checked against the shipped rule ids."""
    path = rack.audit.get("waivers")
    if not path:
        return []
    from metalctl.audit import waivers  # noqa: PLC0415
    from metalctl.rules import catalogue  # noqa: PLC0415

    return waivers.load(Path(path), {r.id for r in catalogue.load()})


def stage_inputs(args: argparse.Namespace, rack: Rack, until: str) -> StageInputs:
    """Everything but the rack file the stages need (credentials are resolved here, once)."""
    rack.check_files()  # the files of later stages too, whatever --until says
    sets = rack.credential_sets(lambda name: common.credential_sets(args, [name])[name])
    if args.insecure:
        verify: bool | str = common.verify_of(args)
    else:
        verify = args.ca_bundle or (str(rack.ca_bundle) if rack.ca_bundle else True)
    site = load_site(_path(rack.site.get("policy")))
    pki_dir = rack.site.get("pki_dir")
    pki = SitePKI(Path(str(pki_dir))) if pki_dir else None
    pki = pki if pki and pki.exists() else None
    if STAGES.index(until) >= STAGES.index("harden") and pki is None:
        # harden turns libvirt TLS on: refused here, before any node is touched
        raise InputError(str(rack.path), "site.pki_dir",
                         f"no site CA in {pki_dir}; run `metalctl pki init`" if pki_dir else
                         "harden needs the site PKI (libvirt TLS certificates): set "
                         "site.pki_dir (or stop with --until provision)")
    known = args.known_hosts or _path(rack.site.get("known_hosts"))
    ssh: dict[str, Any] = {"key_file": args.ssh_key or _path(rack.site.get("ssh_key")),
                           "known_hosts": known, "sudo": args.sudo}
    ironic_args = argparse.Namespace(ironic_url=args.ironic_url or rack.ironic.get("url"),
                                     os_cloud=args.os_cloud or rack.ironic.get("cloud"))
    inputs = StageInputs(credentials=sets, verify=verify,
                         ironic=lambda: common.ironic(ironic_args),
                         harden=HardenOptions(site=site, pki=pki, **ssh),
                         audit=AuditOptions(site=site, pki=pki, waivers=_waivers(rack),
                                            **ssh))
    if STAGES.index(until) >= STAGES.index("handoff"):
        inputs.handoff = handoff_inputs(rack, pki, ssh)
    if STAGES.index(until) >= STAGES.index("provision"):
        try:
            inputs.provision = provision_inputs(rack, inputs, site)
        except InputError as exc:
            if exc.kwargs.get("path") == str(rack.path):
                raise
            raise InputError(str(rack.path), "provision", f"{exc} (stop before it with "
                                                          "--until profile)") from None
    return inputs


def handoff_inputs(rack: Rack, pki: SitePKI | None, ssh: dict[str, Any]
                   ) -> tuple[HandoffSite, HandoffOptions]:
    """The hand-off stage's inputs: the rack's ``site.nova`` file and the audit gate.

    Raises:
        InputError: the rack names no Nova site (a run to hand-off needs one; stop before
            it with ``--until audit``), or the file is invalid (its own file and field).
    """
    path = rack.site.get("nova")
    if not path:
        raise InputError(str(rack.path), "site.nova", "a run to handoff needs the site's "
                                                      "Nova file (or stop with --until audit)")
    site = load_handoff_site(Path(str(path)))
    gate = str(rack.audit.get("gate", "high"))
    return site, HandoffOptions(gate_severity=gate, pki=pki, **ssh)


def provision_inputs(rack: Rack, inputs: StageInputs, site: dict[str, Any]
                     ) -> tuple[ProvisionInputs, ProvisionOptions]:
    """The provision stage's inputs from the rack's ``provision:`` section."""
    p = rack.provision
    via = p.get("via", "pxe")
    if via != "pxe":  # the anaconda deploy's URLs have no place in the rack file yet
        raise InputError(str(rack.path), "provision.via", "metalctl run installs via pxe "
                                                          "only; use `metalctl provision "
                                                          "--via ironic`")
    target = ks.target_os(p.get("os", "RHEL9"))
    template = str(p.get("template") or ("ironic-rhel9-kvm" if via == "ironic"
                                         else target.default_template))
    label = str(p.get("site") or "site")
    kickstart_site = ks.load_site(load_site(_path(p.get("site"))) if p.get("site") else site,
                                  label=label)
    serve = _serve_addr(str(p["serve"])) if p.get("serve") else ("127.0.0.1", 0)
    boot = BootService(serve[0], serve[1], _path(p.get("boot_dir")) or default_state_dir(),
                       files_dir=_path(p.get("files_dir")), public_url=p.get("boot_url"))
    opts = ProvisionOptions(via=via, deadline_s=float(p.get("timeout_s", 1800.0)),
                            ssh_wait_s=float(p.get("ssh_wait_s", 600.0)),
                            concurrency=rack.concurrency["provision"],
                            ssh_user=str(p.get("ssh_user", "root")))
    pinputs = ProvisionInputs(template=template, target=target, site=kickstart_site,
                              boot=boot,
                              known_hosts=_path(p.get("known_hosts")) or default_known_hosts(),
                              ssh_key=_path(p.get("ssh_key")))
    if via == "pxe":
        pinputs.boot_files = BootFiles(str(p.get("kernel", "vmlinuz")),
                                       str(p.get("initrd", "initrd.img")), p.get("stage2"),
                                       tuple(p.get("kernel_args") or ())).validate()

        def creds_for(node: NodeInstall):  # noqa: ANN202 - CredentialSet | None
            name = node.record.credentials
            return inputs.credential_set(name) if name else None

        pinputs.power = BmcPower(creds_for, verify=inputs.verify,
                                 budget=Budget(read_timeout_s=30.0, deadline_s=120.0),
                                 ironic=inputs.ironic_client)
    return pinputs, opts


def serving(inputs: StageInputs, rack: Rack) -> BootService | None:
    """The boot service to run in this process for the run's duration, if any."""
    if inputs.provision is None or not rack.provision.get("serve"):
        return None
    return inputs.provision[0].boot
