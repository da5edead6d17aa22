"""What the stages of a run need, built from the rack file (each stage from its own
section) and the few things a caller may put over it: ``from_rack(rack, until)``.

A library caller needs nothing else to run a rack (:func:`metalctl.run.run` calls this
when it is given no inputs); the CLI passes its options as :class:`Overrides`. Credential
sets are resolved once here, and their passwords registered for log redaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metalctl import access
from metalctl.audit.run import AuditOptions
from metalctl.credentials import Credential
from metalctl.errors import InputError
from metalctl.handoff import HandoffOptions, HandoffSite
from metalctl.handoff import load_site as load_handoff_site
from metalctl.harden import HardenOptions
from metalctl.hosts import load_site
from metalctl.ironic import Ironic
from metalctl.pki import SitePKI
from metalctl.provision.bootservice import BootService
from metalctl.provision.request import ProvisionRequest, assemble, ironic_deploy
from metalctl.provision.stage import ProvisionInputs, ProvisionOptions
from metalctl.run.adapters import StageInputs
from metalctl.run.rackfile import STAGES, Rack


@dataclass(frozen=True)
class Overrides:
    """What a caller puts over the rack file (the CLI's options; all optional).

    Attributes:
        credentials_file: read credential sets from this file only.
        prompt: asked for a set found nowhere (the CLI's terminal prompt); never called
            when None.
        ca_bundle / insecure: BMC TLS verification over the rack's ``bmc.ca_bundle``.
        known_hosts / ssh_key / sudo: the SSH policy of harden, audit and hand-off.
        ironic_url / os_cloud: Ironic over the rack's ``ironic.url``/``ironic.cloud``.
    """

    credentials_file: Path | None = None
    prompt: Callable[[str], Credential] | None = None
    ca_bundle: str | None = None
    insecure: bool = False
    known_hosts: Path | None = None
    ssh_key: Path | None = None
    sudo: bool = False
    ironic_url: str | None = None
    os_cloud: str | None = None


def _path(value: object) -> Path | None:
    return Path(str(value)) if value else None


def ironic_connector(rack: Rack, over: Overrides) -> Callable[[], Ironic]:
    """Connects on first use (a run that stops before enroll never needs Ironic); the
    caller's URL or cloud over the rack's."""
    url = over.ironic_url or rack.ironic.get("url")
    cloud = over.os_cloud or rack.ironic.get("cloud")
    return lambda: access.ironic(url, cloud)


def from_rack(rack: Rack, until: str | None = None, over: Overrides | None = None
              ) -> StageInputs:
    """Everything the stages up to ``until`` need, from the rack and ``over``.

    Raises:
        InputError: a file of the rack is invalid (its own file and field), a set is
            found nowhere, or a stage up to ``until`` lacks what it needs (harden
            without the site PKI, hand-off without the Nova site); nothing is touched.
    """
    over = over or Overrides()
    until = until or rack.until or STAGES[-1]
    rack.check_files()  # the files of later stages too, whatever until says
    sets = rack.credential_sets(
        lambda name: access.credential_set(name, over.credentials_file, prompt=over.prompt))
    verify: bool | str = False if over.insecure else (
        over.ca_bundle or (str(rack.ca_bundle) if rack.ca_bundle else True))
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
    known = over.known_hosts or _path(rack.site.get("known_hosts"))
    ssh: dict[str, Any] = {"key_file": over.ssh_key or _path(rack.site.get("ssh_key")),
                           "known_hosts": known, "sudo": over.sudo}
    inputs = StageInputs(credentials=sets, verify=verify, ironic=ironic_connector(rack, over),
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


def _waivers(rack: Rack) -> list[Any]:
    """The rack's ``audit.waivers`` file, checked against the shipped rule ids."""
    path = rack.audit.get("waivers")
    if not path:
        return []
    from metalctl.audit import waivers  # noqa: PLC0415
    from metalctl.rules import catalogue  # noqa: PLC0415

    return waivers.load(Path(path), {r.id for r in catalogue.load()})


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


def provision_request(rack: Rack, site: dict[str, Any]) -> ProvisionRequest:
    """The rack's ``provision:`` section as a provisioning request."""
    p = rack.provision
    via = p.get("via", "pxe")
    deploy = None
    if via == "ironic":
        # Ironic's anaconda deploy: its conductor and the machine fetch these URLs
        given = {**(p.get("ironic") or {}), "kernel": p.get("kernel"),
                 "initrd": p.get("initrd"), "stage2": p.get("stage2")}
        try:
            deploy = ironic_deploy(given)
        except InputError as exc:
            option = str(exc.kwargs.get("field", "")).lstrip("-").replace("-", "_")
            where = "" if option in ("kernel", "initrd", "stage2") else "ironic."
            raise InputError(str(rack.path), f"provision.{where}{option}",
                             str(exc.kwargs.get("reason", exc))) from None
    return ProvisionRequest(
        via=via, os=str(p.get("os", "RHEL9")), template=p.get("template"),
        site_file=_path(p.get("site")), site_policy=site,
        serve=str(p["serve"]) if p.get("serve") else None, boot_url=p.get("boot_url"),
        boot_dir=_path(p.get("boot_dir")), files_dir=_path(p.get("files_dir")),
        dnsmasq_conf=_path(p.get("dnsmasq_conf")), kernel=str(p.get("kernel", "vmlinuz")),
        initrd=str(p.get("initrd", "initrd.img")), stage2=p.get("stage2"),
        kernel_args=tuple(p.get("kernel_args") or ()), deploy=deploy,
        known_hosts=_path(p.get("known_hosts")), ssh_key=_path(p.get("ssh_key")),
        ssh_user=str(p.get("ssh_user", "root")), deadline_s=float(p.get("timeout_s", 1800.0)),
        ssh_wait_s=float(p.get("ssh_wait_s", 600.0)),
        concurrency=rack.concurrency["provision"])


def provision_inputs(rack: Rack, inputs: StageInputs, site: dict[str, Any]
                     ) -> tuple[ProvisionInputs, ProvisionOptions]:
    """The provision stage's inputs from the rack's ``provision:`` section."""
    return assemble(provision_request(rack, site), credentials=inputs.credential_set,
                    verify=inputs.verify, ironic=inputs.ironic_client)


def serving(inputs: StageInputs, rack: Rack) -> BootService | None:
    """The boot service to run in this process for the run's duration, if any."""
    if inputs.provision is None or not rack.provision.get("serve"):
        return None
    return inputs.provision[0].boot
