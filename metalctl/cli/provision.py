"""``metalctl provision``: install the OS with kickstart over PXE, through Ironic or not."""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

from metalctl.cli import common, options
from metalctl.cli.optcheck import node_pairs
from metalctl.exitcodes import ExitCode
from metalctl.output.progress import NodeLines
from metalctl.output.render import render, summary_line
from metalctl.provision.request import ProvisionRequest, assemble, ironic_deploy
from metalctl.provision.stage import provision


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


def run(args: argparse.Namespace) -> ExitCode:
    """Provision nodes (or, with ``--check``, show their kickstarts) and follow them."""
    via = args.via or ("ironic" if (args.ironic_url or args.os_cloud) else "pxe")
    req = ProvisionRequest(
        via=via, os=args.os, template=args.template, site_file=args.site, serve=args.serve,
        boot_url=args.boot_url, boot_dir=args.boot_dir, files_dir=args.files_dir,
        dnsmasq_conf=args.dnsmasq_conf, kernel=args.kernel, initrd=args.initrd,
        stage2=args.stage2, kernel_args=tuple(args.kernel_arg),
        deploy=ironic_deploy(vars(args)) if via == "ironic" and not args.check else None,
        known_hosts=args.known_hosts, ssh_key=args.ssh_key, ssh_user=args.ssh_user,
        addresses=node_pairs(args.address, "--address"), macs=node_pairs(args.mac, "--mac"),
        template_dirs=args.template_dir, check=args.check, deadline_s=args.deadline,
        ssh_wait_s=args.ssh_wait, concurrency=args.concurrency, redo=args.redo)
    ironic = (lambda: common.ironic(args)) if (args.ironic_url or args.os_cloud) else None
    inputs, opts = assemble(req, credentials=partial(common.merged_credentials, args),
                            verify=common.verify_of(args), ironic=ironic)
    template, target, boot = inputs.template, inputs.target, inputs.boot
    started = time.monotonic()
    with common.open_store(args, create=False) as store:
        if req.serving:
            boot.start()  # BootServiceError (address in use) -> exit 4
        try:
            lines = NodeLines(list(args.nodes), common.STDERR)
            with lines.prog:
                results = provision(args.nodes, inputs, opts, store=store,
                                    on_result=lines.done, on_step=lines.step)
        finally:
            if req.serving:
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
