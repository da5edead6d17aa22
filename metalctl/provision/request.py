"""What a caller asks of provisioning, as data, turned into the stage's inputs in one
place: ``metalctl provision`` (its options) and ``metalctl run`` (the rack's
``provision:`` section) build the same boot service, boot files, power control and
kickstart site through :func:`assemble`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.errors import InputError
from metalctl.hosts import load_site
from metalctl.provision import defaults, dnsmasq
from metalctl.provision import kickstart as ks
from metalctl.provision.bootservice import BootService
from metalctl.provision.bootstate import BootFiles
from metalctl.provision.power import BmcPower
from metalctl.provision.stage import (
    IronicDeploy,
    NodeInstall,
    ProvisionInputs,
    ProvisionOptions,
)

#: a BMC's power calls: a slow BMC answers within this, and gives up after the deadline
POWER_BUDGET = Budget(read_timeout_s=30.0, deadline_s=120.0)


@dataclass(frozen=True)
class ProvisionRequest:
    """How nodes are to be installed.

    Attributes:
        via: ``pxe`` (metalctl's boot service) or ``ironic`` (Ironic's anaconda deploy).
        os / template: the target OS and the kickstart template (default the OS's;
            ``ironic-rhel9-kvm`` via Ironic).
        site_file: the site file with the ``kickstart:`` section; else ``site_policy``.
        serve: ``ADDR[:PORT]``: run the boot service in the caller's process there.
        boot_url / boot_dir: a ``metalctl serve`` elsewhere sharing ``boot_dir``.
        files_dir: installer files served under ``/files/``.
        dnsmasq_conf: dnsmasq's configuration (pins and leases bind installs).
        kernel / initrd / stage2 / kernel_args: the installer (``via=pxe``).
        deploy: the anaconda deploy's URLs (``via=ironic``).
        known_hosts / ssh_key / ssh_user: where delivered keys go, how installs are proven.
        addresses / macs / template_dirs: per-node static addresses, provisioning MACs,
            template folders.
        check / deadline_s / ssh_wait_s / concurrency / redo: how the stage runs.
    """

    via: str = "pxe"
    os: str = "RHEL9"
    template: str | None = None
    site_file: Path | None = None
    site_policy: Mapping[str, Any] | None = None
    serve: str | None = None
    boot_url: str | None = None
    boot_dir: Path | None = None
    files_dir: Path | None = None
    dnsmasq_conf: Path | None = None
    kernel: str = "vmlinuz"
    initrd: str = "initrd.img"
    stage2: str | None = None
    kernel_args: tuple[str, ...] = ()
    deploy: IronicDeploy | None = None
    known_hosts: Path | None = None
    ssh_key: Path | None = None
    ssh_user: str = "root"
    addresses: Mapping[str, str] = field(default_factory=dict)
    macs: Mapping[str, str] = field(default_factory=dict)
    template_dirs: Sequence[Path] | None = None
    check: bool = False
    deadline_s: float = 1800.0
    ssh_wait_s: float = 600.0
    concurrency: int = 4
    redo: bool = False

    @property
    def serving(self) -> bool:
        """Whether the boot service runs in the caller's process (started and stopped
        around the installs)."""
        return self.serve is not None and not self.check


def ironic_deploy(given: Mapping[str, Any]) -> IronicDeploy:
    """The anaconda deploy's URLs from options named as ``metalctl provision``'s
    (``image_source``, ``kernel``, ``initrd``, ``stage2``, ``deploy_kernel``,
    ``deploy_ramdisk``, ``boot_mode``).

    Raises:
        InputError: one is missing, or an installer file is not an http(s) URL.
    """
    missing = [o for o in ("image_source", "deploy_kernel", "deploy_ramdisk")
               if not given.get(o)]
    if missing:
        raise InputError("--via ironic", "--" + missing[0].replace("_", "-"),
                         "needed by Ironic's anaconda deploy")
    for name in ("kernel", "initrd", "stage2", "image_source", "deploy_kernel",
                 "deploy_ramdisk"):
        value = given.get(name)
        if not value or "://" not in str(value):
            raise InputError("--via ironic", f"--{name}", "Ironic needs an http(s) URL")
    return IronicDeploy(image_source=given["image_source"], kernel=given["kernel"],
                        ramdisk=given["initrd"], stage2=given["stage2"],
                        deploy_kernel=given["deploy_kernel"],
                        deploy_ramdisk=given["deploy_ramdisk"], boot_mode=given.get("boot_mode"))


def boot_service(req: ProvisionRequest) -> BootService:
    """The boot service: on ``serve`` in this process, else the state of a ``metalctl
    serve`` elsewhere (``boot_url``), with DHCP's leases from ``dnsmasq_conf``.

    Raises:
        InputError: neither ``serve`` nor ``boot_url`` (and not ``check``), a bad
            ``ADDR[:PORT]``, or a dnsmasq file dnsmasq itself refuses.
    """
    boot_dir = req.boot_dir or defaults.state_dir()
    if req.serve is None:
        if not req.check and not req.boot_url:
            raise InputError("provision", "--serve", "give --serve ADDR[:PORT] (the boot "
                                                     "service in this process) or --boot-url "
                                                     "of a `metalctl serve` sharing --boot-dir")
        return BootService("127.0.0.1", 0, boot_dir, files_dir=req.files_dir,
                           public_url=req.boot_url or "http://127.0.0.1:8080")
    bind, port = defaults.serve_address(req.serve)
    if req.dnsmasq_conf:
        dnsmasq.check(req.dnsmasq_conf)
    return BootService(bind, port, boot_dir, files_dir=req.files_dir, public_url=req.boot_url,
                       dhcp=dnsmasq.DnsmasqLeases(req.dnsmasq_conf) if req.dnsmasq_conf
                       else None)


def _boot_files(req: ProvisionRequest) -> BootFiles:
    kernel, initrd, stage2 = req.kernel, req.initrd, req.stage2
    if req.serve is None and req.boot_url:
        # a `metalctl serve` elsewhere serves its own files dir: name them by URL
        base = req.boot_url.rstrip("/") + "/files/"
        kernel, initrd, stage2 = (v if v is None or "://" in v else base + v
                                  for v in (kernel, initrd, stage2))
    return BootFiles(kernel, initrd, stage2, tuple(req.kernel_args)).validate()


def assemble(req: ProvisionRequest, *,
             credentials: Callable[[str], CredentialSet | None] = lambda _n: None,
             verify: bool | str = True, ironic: Callable[[], Any] | None = None,
             ) -> tuple[ProvisionInputs, ProvisionOptions]:
    """The provision stage's inputs and options for ``req``.

    Args:
        credentials: a BMC credential set by the name discovery recorded.
        verify: BMC TLS verification.
        ironic: connects to Ironic (``via=ironic``; ``via=pxe`` powers enrolled nodes
            through it).

    Raises:
        InputError: see :func:`boot_service`; a bad OS, template, site or boot file; via
            Ironic without an Ironic or without the deploy's URLs.
    """
    target = ks.target_os(req.os)
    template = req.template or ("ironic-rhel9-kvm" if req.via == "ironic"
                                else target.default_template)
    site = ks.load_site(load_site(req.site_file) if req.site_file else dict(
        req.site_policy or load_site(None)), label=str(req.site_file or "site"))
    inputs = ProvisionInputs(
        template=template, target=target, site=site, boot=boot_service(req),
        known_hosts=req.known_hosts or defaults.known_hosts(), addresses=req.addresses,
        macs=req.macs, template_dirs=req.template_dirs, ssh_key=req.ssh_key)
    opts = ProvisionOptions(via=req.via, check=req.check, deadline_s=req.deadline_s,
                            ssh_wait_s=req.ssh_wait_s, concurrency=req.concurrency,
                            redo=req.redo, ssh_user=req.ssh_user)
    if req.check:
        return inputs, opts
    if req.via == "pxe":
        inputs.boot_files = _boot_files(req)

        def creds_for(node: NodeInstall) -> CredentialSet | None:
            name = node.record.credentials
            return credentials(name) if name else None

        inputs.power = BmcPower(creds_for, verify=verify, budget=POWER_BUDGET, ironic=ironic)
    else:
        if ironic is None or req.deploy is None:
            raise InputError("provision", "via", "via ironic needs an Ironic and the "
                                                 "anaconda deploy's URLs")
        inputs.ironic = ironic()
        inputs.ironic_deploy = req.deploy
    return inputs, opts
