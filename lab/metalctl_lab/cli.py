"""``metalctl lab up|status|down|env``: the emulated rack on loopback."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from metalctl.cli import common, options
from metalctl.exitcodes import ExitCode
from metalctl.output.render import render
from metalctl.provision import adopt, dnsmasq
from metalctl_lab import libvirt_lab, nova, nova_hosts, nova_site, provkit, rack
from metalctl_lab.hosts import HostLab
from metalctl_lab.spec import LabState, RackSpec

#: the provisioning network of ``lab up`` (10.203.0.0/24, fd00:203::/64)
DEFAULT_PROVNET = 203
SIZES = {
    "small": rack.RackSpec(),
    # the benchmark rack: 100+ Redfish systems behind 20 BMCs, 10 IPMI BMCs, dead addresses
    "bench": rack.RackSpec(redfish_bmcs=20, systems_per_bmc=5, ipmi_bmcs=10,
                           libvirt_domains=0, dead=10),
}


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``lab`` and its actions (up, status, down, env, hosts-up, hosts-down)."""
    p = sub.add_parser("lab", help="start/stop the emulated rack of real peers on 127.0.0.0/8")
    p.add_argument("action", choices=["up", "status", "down", "env", "hosts-up", "hosts-down",
                                      "nova-up"],
                   help="hosts-up/-down: SSH test hosts (network namespaces with their own "
                        "/etc) for harden and audit")
    p.add_argument("--dir", type=Path, default=None,
                   help="lab directory (default $METALCTL_LAB_DIR or "
                        "~/.local/state/lab/metalctl_lab)")
    p.add_argument("--size", choices=sorted(SIZES), default="small")
    p.add_argument("--octet", type=int, default=10, help="use 127.OCTET.0.0/16")
    p.add_argument("--no-install", action="store_true", help="do not apt-get/pip install peers")
    p.add_argument("--hosts", type=int, default=2, help="hosts-up: how many SSH hosts")
    p.add_argument("--net", type=int, default=200, help="hosts-up: hosts on 10.NET.0.0/24")
    p.add_argument("--provnet", type=int, default=DEFAULT_PROVNET, metavar="NET",
                   help="up: the provisioning network 10.NET.0.0/24 (namespace mcprovNET) "
                        f"the libvirt domains network-boot on (default {DEFAULT_PROVNET})")
    p.add_argument("--nova", action="store_true",
                   help="up: also the lab's Nova, Placement and Glance on the provisioning "
                        "network, and <dir>/nova-site.yaml for a run to `handoff`")
    p.add_argument("--no-provnet", action="store_true",
                   help="up: no provisioning network; libvirt domains are only defined")
    p.add_argument("--boot-port", type=int, default=8080,
                   help="up: the port dnsmasq sends iPXE to on the host side of the "
                        "provisioning network (where `metalctl serve` listens)")
    options.add_output(p)
    options.add_store(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> ExitCode:
    """Start, show, print the environment of, or stop the emulated rack or its SSH hosts."""
    d = args.dir or rack.default_dir()
    if args.action == "up":
        provnet = None if args.no_provnet or not SIZES[args.size].libvirt_domains \
            else args.provnet
        spec = rack.RackSpec(**{**SIZES[args.size].__dict__, "octet": args.octet,
                                "provnet": provnet})
        with common.STDERR.status("starting lab peers (first run installs them)"):
            state = rack.up(spec, d, install=not args.no_install)
            try:
                boot_url = start_dnsmasq(spec, state, args.boot_port)
                if state.provnet:
                    provkit.prepare(Path(d), state.provnet["host_address"], args.boot_port)
                    state.provnet["boot_serve"] = (f"{state.provnet['host_address']}:"
                                                   f"{args.boot_port}")
                    state.save()
                if args.nova:
                    nova_site.up_for_machines(Path(d), state)
            except BaseException:
                nova.down(Path(d) / "nova")
                rack.down(d)
                raise
        rows = [{"what": "discover ranges", "value": " ".join(state.ranges)},
                {"what": "credentials", "value": f"--credentials {rack.LAB_CREDENTIALS} "
                                                 f"(file {state.credentials_file})"},
                {"what": "CA bundle", "value": state.ca_bundle},
                {"what": "Ironic", "value": state.ironic_url},
                *([{"what": "provisioning network",
                    "value": f"{state.provnet['subnet']} (namespace "
                             f"{state.provnet['namespace']}; host side "
                             f"{state.provnet['host_address']}; iPXE asks {boot_url})"}]
                  if state.provnet else []),
                *([{"what": "Nova site", "value": str(Path(d) / nova_site.SITE_FILE)}]
                  if args.nova else []),
                {"what": "environment", "value": f"eval \"$(metalctl lab env --dir {d})\""}]
        render(rows, args.output, columns=[("lab", "what"), ("", "value")], title="lab up")
        return ExitCode.OK
    if args.action == "hosts-up":
        lab = host_lab(Path(d), args.net)
        with common.STDERR.status("starting SSH test hosts (the first run builds their image)"):
            inventory = lab.up_with_inventory(args.hosts)
        render([{"what": "inventory", "value": str(inventory)},
                {"what": "SSH key", "value": str(lab.client_key)},
                {"what": "known_hosts", "value": str(lab.known_hosts)}], args.output,
               columns=[("hosts", "what"), ("", "value")], title="hosts up")
        return ExitCode.OK
    if args.action == "nova-up":
        return nova_up(Path(d), args)
    if args.action == "hosts-down":
        host_lab(Path(d), None).down()
        return ExitCode.OK
    if args.action == "env":
        state = rack.LabState.load(Path(d))
        if state is None:
            common.STDERR.print(f"no lab in {d}; run `metalctl lab up`")
            return ExitCode.PEER_UNAVAILABLE
        for key, value in state.env().items():
            print(f"export {key}={shlex.quote(value)}")
        return ExitCode.OK
    if args.action == "status":
        st = rack.status(d)
        rows = [{"process": k, "alive": v} for k, v in st["processes"].items()]
        render(rows if args.output == "table" else [st], args.output,
               columns=[("process", "process"), ("alive", "alive")], title=f"lab {d}")
        return ExitCode.OK if st["running"] else ExitCode.PEER_UNAVAILABLE
    nova.down(Path(d) / "nova")
    if (Path(d) / "hosts" / "hostlab.json").exists():
        host_lab(Path(d), None).down()
    stopped = rack.down(d)
    common.STDERR.print(f"stopped {len(stopped)} process(es)")
    return ExitCode.OK


def start_dnsmasq(spec: RackSpec, state: LabState, boot_port: int) -> str | None:
    """dnsmasq on the lab's provisioning network, configured as ``--via pxe`` configures
    it (:mod:`metalctl.provision.dnsmasq`): each domain's provisioning MAC pinned to its
    address, iPXE sent to ``http://<host side>:<boot_port>/boot.ipxe``. Returns that
    base URL (None without a provisioning network)."""
    net = rack.provnet(state)
    if net is None:
        return None
    boot_url = f"http://{net.host_address}:{boot_port}"
    hosts = tuple(dnsmasq.DhcpHost(libvirt_lab.domain_mac(spec, i), net.pinned_address(i),
                                   f"lab{spec.octet}-kvm-{i}")
                  for i in range(spec.libvirt_domains))
    cfg = dnsmasq.DnsmasqConfig(boot_url=boot_url, hosts=hosts, **net.dnsmasq_settings())
    net.start_dnsmasq(dnsmasq.write(cfg, net.files / "dnsmasq.conf"))
    return boot_url


def host_lab(d: Path, net: int | None) -> HostLab:
    """The lab's SSH hosts live in ``<lab dir>/hosts``; their subnet is remembered."""
    meta = d / "hosts" / "hostlab.json"
    if net is None:
        net = json.loads(meta.read_text())["net"] if meta.exists() else 200
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"net": net}))
    return HostLab(d / "hosts", net=net)


def nova_up(d: Path, args: argparse.Namespace) -> ExitCode:
    """SSH test hosts running nova-compute, the Nova control plane on their bridge, each
    host in the store as an installed node with its plan, and ``nova-site.yaml`` for
    ``metalctl handoff`` (the lab's credentials file gains the Nova lab's sets)."""
    meta = d / "hosts" / "hostlab.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"net": args.net}))
    hostlab = HostLab(d / "hosts", net=args.net, layers=nova_hosts.LAYERS)
    with common.STDERR.status("starting SSH test hosts with nova-compute and the lab's Nova"):
        inventory = hostlab.up_with_inventory(args.hosts)
        for i in range(1, args.hosts + 1):
            nova_hosts.install(hostlab, i)
        lab = nova.prepare(d / "nova", hostlab.gateway, bind_address=hostlab.gateway,
                           image_service=True)  # Glance + the canary image
        nova.start(lab)
    plan = nova_hosts.lab_plan()
    with common.open_store(args) as store:
        # SSH test hosts have no BMC: they join as installed hosts (provision's adopt)
        adopt.adopt([adopt.AdoptedHost(f"h{i}", hostlab.address(i), hostlab.known_hosts,
                                       plan={"profile": "hpc-lab", "plan": plan})
                     for i in range(1, args.hosts + 1)], store=store)
    nova_site.merge_credentials(rack.LabState.load(d), lab)
    site = nova_site.write_site(d, lab)
    render([{"what": "inventory", "value": str(inventory)},
            {"what": "Nova API", "value": lab.api_url},
            {"what": "site", "value": str(site)}], args.output,
           columns=[("nova", "what"), ("", "value")], title="nova up")
    return ExitCode.OK
