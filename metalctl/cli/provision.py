"""``metalctl provision``: install the OS with kickstart over PXE, through Ironic or not."""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from metalctl.budget import Budget
from metalctl.cli import common, options
from metalctl.errors import InputError
from metalctl.exitcodes import ExitCode
from metalctl.hosts import load_site
from metalctl.output.render import render, summary_line
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
    ProvisionResult,
    provision,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``provision`` and its options."""
    p = sub.add_parser(
        "provision", help="install the OS with kickstart over PXE (via Ironic or metalctl's "
                          "own boot service) and follow each node to installed",
        description="Render and validate every node's kickstart first (nothing is powered "
                    "if one is bad), then install each node and follow it to installed, "
                    "failed (with the installer's or Ironic's reason) or timeout. An "
                    "installed node is skipped; a failed one starts over.")
    p.add_argument("nodes", nargs="+", metavar="NODE", help="stored nodes (name, key or UUID)")
    p.add_argument("--template", help="kickstart template in kickstart/ (default: the OS's; "
                                      "ironic-rhel9-kvm with --via ironic)")
    p.add_argument("--os", default="RHEL9", help="target OS: RHEL8/9/10, Rocky, Alma, Fedora "
                                                 "(pykickstart validates for it)")
    p.add_argument("--via", choices=("ironic", "pxe"),
                   help="ironic (default when an Ironic is configured) or pxe")
    p.add_argument("--check", action="store_true",
                   help="render and validate only; print each kickstart with secrets masked")
    p.add_argument("--site", type=Path, help="site YAML with the kickstart: section")
    p.add_argument("--template-dir", type=Path, action="append",
                   help="look templates up here instead of the shipped kickstart/")
    g = p.add_argument_group("boot service")
    g.add_argument("--serve", metavar="ADDR[:PORT]",
                   help="run the boot service in this process on ADDR (default port 8080) "
                        "for as long as the installs take")
    g.add_argument("--boot-url", help="URL of a `metalctl serve` sharing --boot-dir "
                                      "(when it runs elsewhere)")
    g.add_argument("--boot-dir", type=Path, default=None,
                   help="the boot service's state (default $METALCTL_BOOT_STATE or "
                        "~/.local/state/metalctl/boot)")
    g.add_argument("--files-dir", type=Path, help="installer files served under /files/")
    g.add_argument("--dnsmasq-conf", type=Path, metavar="FILE",
                   help="with --serve: dnsmasq's configuration, whose pins and leases bind "
                        "each install to its machine's address (as `metalctl serve`)")
    g.add_argument("--kernel", default="vmlinuz", help="installer kernel (URL or files path)")
    g.add_argument("--initrd", default="initrd.img", help="installer initramfs")
    g.add_argument("--stage2", help="inst.stage2 (URL or files path)")
    g.add_argument("--kernel-arg", action="append", default=[], help="extra installer argument")
    i = p.add_argument_group("via ironic (anaconda deploy interface)")
    i.add_argument("--image-source", help="liveimg tarball URL (instance_info.image_source)")
    i.add_argument("--deploy-kernel", help="driver_info.deploy_kernel (ipxe validates it)")
    i.add_argument("--deploy-ramdisk", help="driver_info.deploy_ramdisk")
    i.add_argument("--boot-mode", choices=("bios", "uefi"),
                   help="the machines' firmware (default: what discovery read; Ironic "
                        "assumes uefi when unset)")
    n = p.add_argument_group("nodes")
    n.add_argument("--address", action="append", default=[], metavar="NODE=IP/PREFIX",
                   help="static address of the installed OS (default: DHCP, pinned by MAC)")
    n.add_argument("--mac", action="append", default=[], metavar="NODE=MAC",
                   help="provisioning MAC (default: the first NIC the BMC lists)")
    p.add_argument("--known-hosts", type=Path, default=None,
                   help="where delivered host keys go (default $METALCTL_KNOWN_HOSTS or "
                        "~/.local/state/metalctl/known_hosts)")
    p.add_argument("--ssh-key", type=Path, help="private key matching the site's ssh_keys "
                                                "(to prove the installed host over SSH)")
    p.add_argument("--ssh-user", default="root")
    p.add_argument("--deadline", type=float, default=1800.0,
                   help="seconds from the start of an install to its end callback")
    p.add_argument("--ssh-wait", type=float, default=600.0,
                   help="seconds after the install for the host to answer SSH")
    p.add_argument("--concurrency", type=int, default=4, help="installs at once")
    p.add_argument("--redo", action="store_true", help="reinstall nodes already installed")
    options.add_credentials(p, required=False)
    options.add_tls(p)
    options.add_ironic(p)
    options.add_output(p)
    options.add_store(p)
    p.set_defaults(func=run, path_kinds={"known_hosts": "output"})  # where keys go


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition("=")
        if not sep or not name or not value:
            raise InputError(option, v, "expected NODE=VALUE")
        out[name] = value
    return out


def _ironic_deploy(args: argparse.Namespace) -> IronicDeploy:
    missing = [o for o in ("image_source", "deploy_kernel", "deploy_ramdisk")
               if not getattr(args, o)]
    if missing:
        raise InputError("--via ironic", "--" + missing[0].replace("_", "-"),
                         "needed by Ironic's anaconda deploy")
    for name in ("kernel", "initrd", "stage2"):
        value = getattr(args, name)
        if not value or "://" not in value:
            raise InputError("--via ironic", f"--{name}", "Ironic needs an http(s) URL")
    return IronicDeploy(image_source=args.image_source, kernel=args.kernel,
                        ramdisk=args.initrd, stage2=args.stage2,
                        deploy_kernel=args.deploy_kernel, deploy_ramdisk=args.deploy_ramdisk,
                        boot_mode=args.boot_mode)


class _NodeLines:
    """One rich progress line per node: its latest install step and elapsed time."""

    def __init__(self, nodes: list[str]) -> None:
        self.prog = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"),
                             TextColumn("{task.fields[step]}"), TimeElapsedColumn(),
                             console=common.STDERR, transient=False,
                             disable=not sys.stderr.isatty())
        self.tasks = {n: self.prog.add_task(n, total=None, step="waiting") for n in nodes}
        self.lock = threading.Lock()

    def step(self, node: str, step: str) -> None:
        with self.lock:
            task = self.tasks.get(node)
            if task is None:
                task = self.tasks[node] = self.prog.add_task(node, total=None, step="")
            self.prog.update(task, step=step)

    def done(self, result: ProvisionResult) -> None:
        self.step(result.node, f"{result.status}" + (f": {result.reason[:60]}"
                                                      if result.reason else ""))
        with self.lock:
            task = self.tasks.get(result.node)
            if task is not None:
                self.prog.update(task, total=1, completed=1)


def run(args: argparse.Namespace) -> ExitCode:
    """Provision nodes (or, with ``--check``, show their kickstarts) and follow them."""
    via = args.via or ("ironic" if (args.ironic_url or args.os_cloud) else "pxe")
    target = ks.target_os(args.os)
    template = args.template or ("ironic-rhel9-kvm" if via == "ironic"
                                 else target.default_template)
    site = ks.load_site(load_site(args.site), label=str(args.site or "site"))
    boot_dir = args.boot_dir or defaults.state_dir()
    bind_port = defaults.serve_address(args.serve) if args.serve else None
    if not args.check and bind_port is None and not args.boot_url:
        raise InputError("provision", "--serve", "give --serve ADDR[:PORT] (the boot service "
                                                 "in this process) or --boot-url of a "
                                                 "`metalctl serve` sharing --boot-dir")
    if bind_port is not None:
        if args.dnsmasq_conf:
            dnsmasq.check(args.dnsmasq_conf)
        boot = BootService(bind_port[0], bind_port[1], boot_dir, files_dir=args.files_dir,
                           public_url=args.boot_url,
                           dhcp=dnsmasq.DnsmasqLeases(args.dnsmasq_conf)
                           if args.dnsmasq_conf else None)
    else:
        boot = BootService("127.0.0.1", 0, boot_dir, files_dir=args.files_dir,
                           public_url=args.boot_url or "http://127.0.0.1:8080")
    opts = ProvisionOptions(via=via, check=args.check, deadline_s=args.deadline,
                            ssh_wait_s=args.ssh_wait, concurrency=args.concurrency,
                            redo=args.redo, ssh_user=args.ssh_user)
    inputs = ProvisionInputs(
        template=template, target=target, site=site, boot=boot,
        known_hosts=args.known_hosts or defaults.known_hosts(),
        addresses=_pairs(args.address, "--address"), macs=_pairs(args.mac, "--mac"),
        template_dirs=args.template_dir, ssh_key=args.ssh_key)
    if not args.check and via == "pxe":
        kernel, initrd, stage2 = args.kernel, args.initrd, args.stage2
        if bind_port is None:
            # a `metalctl serve` elsewhere serves its own files dir: name them by URL
            base = args.boot_url.rstrip("/") + "/files/"
            kernel, initrd, stage2 = (v if v is None or "://" in v else base + v
                                      for v in (kernel, initrd, stage2))
        inputs.boot_files = BootFiles(kernel, initrd, stage2,
                                      tuple(args.kernel_arg)).validate()

        def creds_for(node: NodeInstall):  # noqa: ANN202 - CredentialSet | None
            name = node.record.credentials
            return common.merged_credentials(args, name) if name else None

        inputs.power = BmcPower(creds_for, verify=common.verify_of(args),
                                budget=Budget(read_timeout_s=30.0, deadline_s=120.0),
                                ironic=(lambda: common.ironic(args))
                                if (args.ironic_url or args.os_cloud) else None)
    if not args.check and via == "ironic":
        inputs.ironic = common.ironic(args)
        inputs.ironic_deploy = _ironic_deploy(args)
    started = time.monotonic()
    with common.open_store(args, create=False) as store:
        serving = bind_port is not None and not args.check
        if serving:
            boot.start()  # BootServiceError (address in use) -> exit 4
        try:
            lines = _NodeLines(list(args.nodes))
            with lines.prog:
                results = provision(args.nodes, inputs, opts, store=store,
                                    on_result=lines.done, on_step=lines.step)
        finally:
            if serving:
                boot.stop()
    if args.check and args.output == "table":
        for r in results:
            sys.stdout.write(f"# {r.node}: {template} for {target.name} (secrets masked)\n"
                             f"{r.kickstart}\n")
            for w in r.warnings:
                common.STDERR.print(f"{r.node}: warning: {w}")
    rows = [r.to_dict() for r in results]
    if args.output == "table":
        render(rows, "table", title=f"provision via {via}" + (" --check" if args.check else ""),
               columns=[("node", "node"), ("status", "status"), ("address", "address"),
                        ("took", lambda r: f"{sum(r['timings'].values()):.0f}s"
                         if r["timings"] else None),
                        ("steps", lambda r: " ".join(f"{k} {v:.0f}s" for k, v in
                                                     r["timings"].items()) or None),
                        ("reason", "reason")])
    else:
        render(rows, args.output, columns=[])
    common.STDERR.print(summary_line(Counter(r.status for r in results)) +
                        f" in {time.monotonic() - started:.0f}s")
    return ExitCode.FAILED if any(not r.ok for r in results) else ExitCode.OK
