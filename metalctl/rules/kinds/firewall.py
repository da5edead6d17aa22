"""The host firewall as it runs: the ``firewall`` kind.

A compute host's firewall stays on, drops inbound traffic by default and opens SSH plus
exactly what Nova and libvirt need (libvirt TLS, QEMU's migration range, the console
range) on the management address. The check reads the *running* state, never a file:

* Debian (nftables): ``nft -j list ruleset`` (libnftables JSON schema, nft 1.0.6 as in
  bookworm: ``libnftables-json(5)``). Every base chain on the ``input`` hook of the
  management address's family is interpreted for new connections from another machine,
  port by port; an expression this module does not know is judged both ways (it may
  match, it may not), so a verdict that depends on it is not claimed. nftables semantics:
  a packet is accepted only when every base chain on the hook accepts it; a drop in any
  of them is final.
* RHEL (firewalld): ``firewall-cmd --state`` and ``--list-all`` of every zone in use
  (the runtime configuration, not ``--permanent``): the zones a packet can meet must
  have target DROP, SSH as their only service, no ports and exactly the rich rules that
  open the compute ports to the management address.

Harden writes the configuration and loads it: ``/etc/nftables.conf`` (a ``table inet
metalctl`` of its own, replaced atomically: other tables, such as libvirt's, are left
alone) loaded with ``nft -f``; on RHEL a firewalld zone ``metalctl`` (target DROP) made
the default, runtime and permanent.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import STR, register
from metalctl.rules.plan import (
    CHANGE,
    COMPLIANT,
    ERROR,
    Check,
    CheckOutcome,
    RulePlan,
    Workspace,
    manual,
    outcome,
)

NFT_PROBE = "firewall:nft"
FIREWALLD_PROBE = "firewall:firewalld"
#: ``nft -j list ruleset`` of a firewalld host is tens of kilobytes (probes are cut at
#: 8000 bytes unless they ask for more): the whole ruleset or no verdict
NFT_LIMIT = 1 << 20
NFT_CONF = "/etc/nftables.conf"
TABLE = "metalctl"
ZONE = "metalctl"
ABSENT = "absent"
ALL = ((1, 65535),)
NONE: tuple[tuple[int, int], ...] = ()
#: protocols judged: TCP in full, UDP and SCTP must not be open at all (ICMP is allowed:
#: path MTU discovery and IPv6 neighbour discovery need it)
PROTOS = ("tcp", "udp", "sctp")
#: the service names nft may print instead of numbers (``-n`` is not used by ``-j``)
SERVICES = {"ssh": 22}

PORT_ITEM: dict[str, Any] = {"anyOf": [
    {"type": "integer", "minimum": 1, "maximum": 65535},
    {"type": "string", "pattern": "^[0-9]{1,5}(-[0-9]{1,5})?$"}]}


# --- port sets: sorted, disjoint, inclusive intervals -------------------------------------


Ports = tuple[tuple[int, int], ...]


def norm(ranges: Any) -> Ports:
    """Sorted, merged intervals."""
    out: list[list[int]] = []
    for lo, hi in sorted((int(a), int(b)) for a, b in ranges if int(a) <= int(b)):
        if out and lo <= out[-1][1] + 1:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return tuple((a, b) for a, b in out)


def union(a: Ports, b: Ports) -> Ports:
    return norm([*a, *b])


def minus(a: Ports, b: Ports) -> Ports:
    out: list[tuple[int, int]] = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
        if cur <= hi:
            out.append((cur, hi))
    return norm(out)


def inter(a: Ports, b: Ports) -> Ports:
    return minus(a, minus(a, b))


def parse_ports(items: list[Any]) -> Ports:
    """``[22, "49152-49215"]`` as intervals."""
    out = []
    for item in items:
        lo, _, hi = str(item).partition("-")
        out.append((int(lo), int(hi or lo)))
    return norm(out)


def show(ports: Ports) -> str:
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in ports) or "none"


# --- nftables: what a base chain does to new connections from elsewhere ---------------------


@dataclass(frozen=True)
class Packet:
    """A class of packets: a new connection of ``proto`` from another machine, on a
    non-loopback interface, to the management address ``address`` (``mgmt``) or to
    another address of the host (``mgmt`` False), of address family ``family``."""

    proto: str
    family: int
    mgmt: bool
    address: str


@dataclass
class Match:
    """What a rule's conditions select: ports it certainly matches, ports it may match."""

    must: Ports = ALL
    may: Ports = ALL
    unknown: list[str] = field(default_factory=list)

    def both(self, ports: Ports) -> None:
        self.must, self.may = inter(self.must, ports), inter(self.may, ports)

    def maybe(self, why: str) -> None:
        self.must = NONE
        self.unknown.append(why)


@dataclass
class Flow:
    """Ports of one packet class through a chain: certainly / possibly accepted,
    certainly / possibly dropped, and still going (certainly / possibly)."""

    go_must: Ports
    go_may: Ports
    acc_must: Ports = NONE
    acc_may: Ports = NONE
    drop_must: Ports = NONE
    drop_may: Ports = NONE
    ret_must: Ports = NONE
    ret_may: Ports = NONE
    unknown: list[str] = field(default_factory=list)


class Ruleset:
    """``nft -j list ruleset``, indexed: chains by (family, table, name), rules in order."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.chains: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.rules: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        for item in doc.get("nftables", []):
            if "chain" in item:
                c = item["chain"]
                self.chains[(c["family"], c["table"], c["name"])] = c
            elif "rule" in item:
                r = item["rule"]
                self.rules.setdefault((r["family"], r["table"], r["chain"]), []).append(r)

    def input_chains(self, family: int) -> list[dict[str, Any]]:
        fams = ("inet", "ip") if family == 4 else ("inet", "ip6")
        return [c for c in self.chains.values()
                if c.get("hook") == "input" and c.get("type", "filter") == "filter"
                and c["family"] in fams]


def _values(right: Any) -> list[Any]:
    if isinstance(right, dict) and "set" in right:
        return list(right["set"])
    if isinstance(right, list):
        return right
    return [right]


def _right_ports(right: Any) -> Ports | None:
    out = []
    for v in _values(right):
        if isinstance(v, int):
            out.append((v, v))
        elif isinstance(v, str) and (v.isdigit() or v in SERVICES):
            p = int(v) if v.isdigit() else SERVICES[v]
            out.append((p, p))
        elif isinstance(v, dict) and "range" in v:
            a, b = v["range"]
            if not (isinstance(a, int) and isinstance(b, int)):
                return None
            out.append((a, b))
        else:
            return None
    return norm(out)


def _addr_match(right: Any, address: str) -> bool | None:
    """Does ``address`` match the right-hand side (None: not an address expression)?"""
    ip = ipaddress.ip_address(address)
    for v in _values(right):
        if isinstance(v, dict) and "prefix" in v:
            net = ipaddress.ip_network(f"{v['prefix']['addr']}/{v['prefix']['len']}",
                                       strict=False)
        elif isinstance(v, dict) and "range" in v:
            a, b = (ipaddress.ip_address(x) for x in v["range"])
            if a.version == ip.version and a <= ip <= b:  # type: ignore[operator]
                return True
            continue
        elif isinstance(v, str):
            try:
                net = ipaddress.ip_network(v, strict=False)
            except ValueError:
                return None
        else:
            return None
        if net.version == ip.version and ip in net:
            return True
    return False


def _negate(op: str) -> bool:
    return op == "!="


def _condition(m: dict[str, Any], pkt: Packet, cond: Match) -> None:
    """Narrow ``cond`` by one ``match`` expression for the packet class ``pkt``."""
    left, right, op = m.get("left"), m.get("right"), m.get("op", "==")
    text = json.dumps(m, sort_keys=True)
    if op not in ("==", "!=", "in"):
        cond.maybe(text)
        return
    neg = _negate(op)

    def boolean(value: bool) -> None:
        if value != neg:
            return
        cond.must = cond.may = NONE

    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key in ("iif", "iifname"):
            names = [str(v) for v in _values(right)]
            if names == ["lo"]:  # our packets come from another machine
                boolean(False)
            else:
                cond.maybe(text)  # which interface carries it depends on the host
        elif key == "l4proto":
            boolean(pkt.proto in [str(v) for v in _values(right)] or
                    {"tcp": 6, "udp": 17, "sctp": 132}[pkt.proto] in _values(right))
        elif key == "nfproto":
            boolean(f"ipv{pkt.family}" in [str(v) for v in _values(right)])
        else:
            cond.maybe(text)
        return
    if isinstance(left, dict) and "ct" in left:
        if left["ct"].get("key") == "state":
            states = [str(v) for v in _values(right)]
            boolean("new" in states)
        else:
            cond.maybe(text)
        return
    if isinstance(left, dict) and "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol"), p.get("field")
        if proto in PROTOS and fld == "dport":
            ports = _right_ports(right)
            if proto != pkt.proto:
                cond.must = cond.may = NONE
            elif ports is None:
                cond.maybe(text)
            else:
                cond.both(minus(ALL, ports) if neg else ports)
            return
        if proto in PROTOS:  # another field of the header: the protocol itself is implied
            if proto != pkt.proto:
                cond.must = cond.may = NONE
            else:
                cond.maybe(text)
            return
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr", "protocol", "nexthdr"):
            if (proto == "ip") != (pkt.family == 4):
                cond.must = cond.may = NONE
                return
            if fld in ("protocol", "nexthdr"):
                boolean(pkt.proto in [str(v) for v in _values(right)])
                return
            if fld == "saddr":
                loop = "127.0.0.1" if pkt.family == 4 else "::1"
                if _addr_match(right, loop) is True:
                    # loopback sources (CIS 4.3.6): never another machine's packets
                    boolean(False)
                else:
                    cond.maybe(text)
                return
            hit = _addr_match(right, pkt.address)
            if hit is None:
                cond.maybe(text)
            elif pkt.mgmt:
                boolean(hit)
            elif _values(right) == [pkt.address]:
                boolean(False)  # another address is certainly not the management address
            else:
                cond.maybe(text)  # another address of the host may be this one
            return
    cond.maybe(text)


#: statements that neither select packets nor decide their fate
NO_OPS = ("counter", "log", "notrack", "mangle")
VERDICTS = ("accept", "drop", "reject", "return", "continue", "jump", "goto", "vmap", "queue")


def _verdict(expr: list[dict[str, Any]]) -> tuple[str, str | None]:
    """The rule's verdict: accept / drop / jump / return / continue / unknown."""
    for e in expr:
        for key in ("accept", "drop", "reject", "return", "continue"):
            if key in e:
                return ("drop" if key == "reject" else key), None
        if "jump" in e:
            return "jump", e["jump"]["target"]
        if "goto" in e:  # its return goes to the caller's caller: judged as a jump
            return "jump", e["goto"]["target"]
        if "vmap" in e or "queue" in e:
            return "unknown", None
    return "continue", None


def _conditions(expr: list[dict[str, Any]], pkt: Packet) -> Match:
    cond = Match()
    for e in expr:
        if "match" in e:
            _condition(e["match"], pkt, cond)
        elif not any(k in e for k in (*NO_OPS, *VERDICTS)):
            cond.maybe(json.dumps(e, sort_keys=True))  # limit, xt, fib, quota...
    return cond


def _walk(rs: Ruleset, key: tuple[str, str, str], pkt: Packet, go_must: Ports, go_may: Ports,
          depth: int = 0) -> Flow:
    """Follow the ports of ``pkt`` that reach chain ``key`` (certainly / possibly) through
    its rules; what falls off its end (or returns) is left in ``go_*``."""
    flow = Flow(go_must, go_may)
    if depth > 16:
        flow.unknown.append(f"jumps nested deeper than 16 at {key[2]}")
        flow.acc_may = flow.drop_may = go_may
        flow.go_must = NONE
        return flow
    for rule in rs.rules.get(key, []):
        expr = rule.get("expr", [])
        cond = _conditions(expr, pkt)
        verdict, target = _verdict(expr)
        where = f"{key[0]} {key[1]} {key[2]} handle {rule.get('handle')}"
        hit_must, hit_may = inter(flow.go_must, cond.must), inter(flow.go_may, cond.may)
        if hit_may:
            flow.unknown += [f"{where}: {u}" for u in cond.unknown]
        rest_must, rest_may = minus(flow.go_must, cond.may), minus(flow.go_may, cond.must)
        if verdict == "continue":
            continue
        if verdict == "accept":
            flow.acc_must = union(flow.acc_must, hit_must)
            flow.acc_may = union(flow.acc_may, hit_may)
        elif verdict == "drop":
            flow.drop_must = union(flow.drop_must, hit_must)
            flow.drop_may = union(flow.drop_may, hit_may)
        elif verdict == "return":
            flow.ret_must = union(flow.ret_must, hit_must)
            flow.ret_may = union(flow.ret_may, hit_may)
        elif verdict == "jump" and (key[0], key[1], target) in rs.chains:
            sub = _walk(rs, (key[0], key[1], str(target)), pkt, hit_must, hit_may, depth + 1)
            flow.unknown += [u for u in sub.unknown if u not in flow.unknown]
            flow.acc_must = union(flow.acc_must, sub.acc_must)
            flow.acc_may = union(flow.acc_may, sub.acc_may)
            flow.drop_must = union(flow.drop_must, sub.drop_must)
            flow.drop_may = union(flow.drop_may, sub.drop_may)
            # what the called chain returns goes on here
            rest_must, rest_may = union(rest_must, sub.go_must), union(rest_may, sub.go_may)
        else:  # an unknown verdict (a verdict map, a queue): it may end it either way, or not
            if hit_may:
                flow.unknown.append(f"{where}: verdict {json.dumps(expr[-1:])}")
            flow.acc_may = union(flow.acc_may, hit_may)
            flow.drop_may = union(flow.drop_may, hit_may)
            rest_may = flow.go_may
        flow.go_must, flow.go_may = rest_must, rest_may
    flow.go_must, flow.go_may = union(flow.go_must, flow.ret_must), \
        union(flow.go_may, flow.ret_may)
    return flow


@dataclass
class Judgement:
    """Per packet class: the ports certainly and possibly accepted; the input chains."""

    open_must: dict[tuple[str, bool], Ports]
    open_may: dict[tuple[str, bool], Ports]
    chains: list[str]
    drop_policy: bool
    unknown: list[str]


def judge_nft(doc: dict[str, Any], mgmt_address: str) -> Judgement:
    """What the running nftables ruleset accepts of new connections from elsewhere: to
    the management address and to any other address of the host, per protocol."""
    rs = Ruleset(doc)
    family = ipaddress.ip_address(mgmt_address).version
    chains = rs.input_chains(family)
    must: dict[tuple[str, bool], Ports] = {}
    may: dict[tuple[str, bool], Ports] = {}
    unknown: list[str] = []
    for proto in PROTOS:
        for to_mgmt in (True, False):
            pkt = Packet(proto, family, to_mgmt, mgmt_address)
            acc_must, acc_may = ALL, ALL
            for c in chains:
                flow = _walk(rs, (c["family"], c["table"], c["name"]), pkt, ALL, ALL)
                unknown += [u for u in flow.unknown if u not in unknown]
                if c.get("policy", "accept") == "accept":
                    flow.acc_must = union(flow.acc_must, flow.go_must)
                    flow.acc_may = union(flow.acc_may, flow.go_may)
                acc_must, acc_may = inter(acc_must, flow.acc_must), inter(acc_may, flow.acc_may)
            must[(proto, to_mgmt)], may[(proto, to_mgmt)] = acc_must, acc_may
    names = [f"{c['family']} {c['table']} {c['name']} (policy {c.get('policy', 'accept')})"
             for c in chains]
    return Judgement(must, may, names, any(c.get("policy") == "drop" for c in chains), unknown)


# --- firewalld ------------------------------------------------------------------------------


def parse_firewalld(text: str) -> dict[str, Any]:
    """The probe's output: ``state:``, ``default:``, ``active:`` lines, then one
    ``firewall-cmd --list-all`` block per zone."""
    out: dict[str, Any] = {"state": "", "default": "", "active": [], "zones": {}}
    zone: dict[str, Any] | None = None
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.startswith("state: "):
            out["state"] = line[7:].strip()
        elif line.startswith("default: "):
            out["default"] = line[9:].strip()
        elif line.startswith("active: "):
            name = line[8:].strip()
            if name and not name.startswith(("interfaces:", "sources:")):
                out["active"].append(name)
        elif line and not line[0].isspace():
            name = line.split()[0]
            zone = out["zones"].setdefault(name, {"rich rules": []})
        elif zone is not None and line.strip():
            stripped = line.strip()
            k, sep, v = stripped.partition(":")
            if sep and k in ("target", "icmp-block-inversion", "interfaces", "sources",
                             "services", "ports", "protocols", "forward", "masquerade",
                             "forward-ports", "source-ports", "icmp-blocks", "rich rules"):
                key = k
                if k == "rich rules":
                    if v.strip():
                        zone[k].append(v.strip())
                else:
                    zone[k] = v.strip()
            elif key == "rich rules":
                zone[key].append(stripped)
    return out


def rich_rules(address: str, ports: Ports) -> list[str]:
    """The firewalld rich rules that open ``ports`` (TCP) on ``address``, in the form
    ``firewall-cmd --list-all`` prints them."""
    fam = "ipv4" if ipaddress.ip_address(address).version == 4 else "ipv6"
    return [f'rule family="{fam}" destination address="{address}" port '
            f'port="{a if a == b else f"{a}-{b}"}" protocol="tcp" accept' for a, b in ports]


def judge_firewalld(state: dict[str, Any], address: str, ssh_port: int,
                    ports: Ports) -> list[str]:
    """What differs from the wanted policy (empty: compliant)."""
    if state["state"] != "running":
        return [f"firewalld is not running (firewall-cmd --state: {state['state'] or 'no answer'})"]
    zones = sorted(set(state["active"]) | {state["default"]})
    want_rich = set(rich_rules(address, ports))
    problems = []
    for name in zones:
        z = state["zones"].get(name)
        if z is None:
            problems.append(f"zone {name}: not listed")
            continue
        if z.get("target") != "DROP":
            problems.append(f"zone {name}: target {z.get('target') or '?'} (want DROP)")
        services = set(z.get("services", "").split())
        if services != {"ssh"} and not (ssh_port != 22 and not services):
            problems.append(f"zone {name}: services {' '.join(sorted(services)) or 'none'} "
                            "(want ssh only)")
        want_ports = "" if ssh_port == 22 else f"{ssh_port}/tcp"
        for k, want in (("ports", want_ports), ("protocols", ""), ("source-ports", ""),
                        ("forward-ports", "")):
            if z.get(k, "") != want:
                problems.append(f"zone {name}: {k} {z.get(k)} (want {want or 'none'})")
        have_rich = set(z.get("rich rules", []))
        for extra in sorted(have_rich - want_rich):
            problems.append(f"zone {name}: rich rule not in the plan: {extra}")
        for missing in sorted(want_rich - have_rich):
            problems.append(f"zone {name}: missing rich rule: {missing}")
    return problems


# --- the kind -------------------------------------------------------------------------------


def _gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.probes[NFT_PROBE] = ("command -v nft >/dev/null 2>&1 || { echo " + ABSENT
                              + "; exit 0; }; nft -j list ruleset")
    spec.probe_limits[NFT_PROBE] = NFT_LIMIT
    spec.probes[FIREWALLD_PROBE] = (
        "command -v firewall-cmd >/dev/null 2>&1 || { echo " + ABSENT + "; exit 0; }; "
        'echo "state: $(firewall-cmd --state 2>&1)"; '
        'd=$(firewall-cmd --get-default-zone 2>/dev/null); echo "default: $d"; '
        "a=$(firewall-cmd --get-active-zones 2>/dev/null | grep -v '^[[:space:]]'); "
        'for z in $a; do echo "active: $z"; done; '
        "for z in $(printf '%s\\n' $d $a | sort -u); do firewall-cmd --zone=\"$z\" --list-all; "
        "done")
    spec.units.update({"nftables.service", "firewalld.service"})
    spec.content.add(NFT_CONF)


def nft_conf(address: str, ssh_port: int, ports: Ports) -> str:
    """``/etc/nftables.conf``: one table of metalctl's, replaced as a whole when loaded
    (declared, deleted, declared again: one transaction; other tables stay)."""
    fam = "ip" if ipaddress.ip_address(address).version == 4 else "ip6"
    return (
        "#!/usr/sbin/nft -f\n"
        "# Written by metalctl harden (FWL-001): inbound traffic is dropped unless it is SSH,\n"
        "# or libvirt TLS, QEMU migration or a console on the management address.\n"
        "# Loaded at boot by nftables.service; `nft -f` replaces only this table.\n"
        f"table inet {TABLE}\n"
        f"delete table inet {TABLE}\n"
        f"table inet {TABLE} {{\n"
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy drop;\n"
        '\t\tiif "lo" accept\n'
        "\t\tip saddr 127.0.0.0/8 drop\n"
        "\t\tip6 saddr ::1 drop\n"
        "\t\tct state established,related accept\n"
        "\t\tct state invalid drop\n"
        "\t\tmeta l4proto { icmp, ipv6-icmp } accept\n"
        f"\t\ttcp dport {ssh_port} accept\n"
        f"\t\t{fam} daddr {address} tcp dport {{ {', '.join(_nft_range(p) for p in ports)} }}"
        " accept\n"
        "\t}\n"
        "}\n")


def _nft_range(p: tuple[int, int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}-{p[1]}"


def firewalld_fix(address: str, ssh_port: int, ports: Ports) -> str:
    """The commands that make zone ``metalctl`` (target DROP, SSH, the compute ports on
    the management address) the default zone, runtime and permanent."""
    q = shlex.quote
    fc = f"firewall-cmd --permanent --zone={ZONE}"
    lines = [
        # nftables.service's stop flushes the whole ruleset: before firewalld reloads
        "if systemctl is-enabled --quiet nftables.service; then "
        "systemctl disable --now nftables.service; fi",
        "systemctl enable --now firewalld",
        f"firewall-cmd --permanent --get-zones | tr ' ' '\\n' | grep -qx {ZONE} || "
        f"firewall-cmd --permanent --new-zone={ZONE}",
        f"{fc} --set-target=DROP",
        f"for s in $({fc} --list-services); do {fc} --remove-service=$s; done",
        f"for p in $({fc} --list-ports); do {fc} --remove-port=$p; done",
        f"{fc} --list-rich-rules | while IFS= read -r r; do [ -n \"$r\" ] && "
        f"{fc} --remove-rich-rule=\"$r\"; done",
        f"{fc} --add-service=ssh" if ssh_port == 22 else f"{fc} --add-port={ssh_port}/tcp",
        *(f"{fc} --add-rich-rule={q(r)}" for r in rich_rules(address, ports)),
        "firewall-cmd --reload",
        f"firewall-cmd --set-default-zone={ZONE}",
    ]
    return "; ".join(lines)


@register(
    "firewall",
    body={"address": STR, "ports": {"type": "array", "minItems": 1, "items": PORT_ITEM},
          "ssh_port": {"type": "integer", "minimum": 1, "maximum": 65535}},
    required=("address", "ports"),
    gather=_gather,
)
def k_firewall(ck: Check) -> CheckOutcome:
    """The running firewall drops inbound traffic by default and accepts new TCP
    connections to exactly SSH (any address) and ``ports`` (the management address
    ``address`` only); nothing else, of TCP, UDP or SCTP."""
    address, ssh_port = str(ck.body["address"]), int(ck.body.get("ssh_port", 22))
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return ck.outcome(ERROR, f"management address {address!r} is not an IP address: "
                          "the ports cannot be restricted to it (set mgmt_address in the "
                          "inventory)")
    ports = parse_ports(ck.body["ports"])
    expected = (f"input policy drop; tcp {ssh_port} on every address; tcp {show(ports)} on "
                f"{address} only; nothing else (tcp, udp, sctp)")
    if ck.facts.family == "rhel":
        return _firewalld(ck.rule, ck.facts, ck.plan, address, ssh_port, ports, expected)
    return _nft(ck.rule, ck.facts, ck.ws, ck.plan, address, ssh_port, ports, expected)


def _firewalld(rule: Rule, facts: HostFacts, plan: RulePlan, address: str, ssh_port: int,
               ports: Ports, expected: str) -> CheckOutcome:
    out = facts.probes.get(FIREWALLD_PROBE, "")
    if not out:
        return outcome(rule, ERROR, "firewalld not read (no probe output)", expected)
    if out.strip() == ABSENT:
        return manual(rule, expected, "no firewall-cmd on the host",
                      "dnf install firewalld; then metalctl harden --rule " + rule.id)
    state = parse_firewalld(out)
    problems = judge_firewalld(state, address, ssh_port, ports)
    if facts.init == "systemd" and facts.units.get("firewalld.service") != "enabled":
        problems.append("firewalld.service not enabled: no firewall after the next boot")
    if facts.units.get("nftables.service") == "enabled":
        problems.append("nftables.service enabled beside firewalld (one firewall utility: "
                        "its ruleset at boot is not firewalld's)")
    seen = (f"firewalld {state['state'] or '?'}; default zone {state['default'] or '?'}; "
            f"active {' '.join(state['active']) or 'none'}")
    if not problems:
        return outcome(rule, COMPLIANT, "firewall-cmd --list-all (runtime)", expected, seen)
    plan.commands.append((rule.id, firewalld_fix(address, ssh_port, ports)))
    return outcome(rule, CHANGE, "; ".join(problems), expected, seen)


def _nft(rule: Rule, facts: HostFacts, ws: Workspace, plan: RulePlan, address: str,
         ssh_port: int, ports: Ports, expected: str) -> CheckOutcome:
    out = facts.probes.get(NFT_PROBE, "")
    if out.strip() == ABSENT:
        return manual(rule, expected, "no nft on the host (nftables not installed)",
                      "apt-get install nftables; then metalctl harden --rule " + rule.id)
    if len(out.encode()) >= NFT_LIMIT - 1:
        return outcome(rule, ERROR, f"nft -j list ruleset is larger than {NFT_LIMIT} bytes: "
                       "not judged", expected)
    try:
        doc = json.loads(out)
    except ValueError:
        return outcome(rule, ERROR, f"nft -j list ruleset: {out[:200] or 'no output'}",
                       expected)
    j = judge_nft(doc, address)
    want_mgmt = union(((ssh_port, ssh_port),), ports)
    want_other = ((ssh_port, ssh_port),)
    problems = []
    if not j.drop_policy:
        problems.append("no input base chain with policy drop"
                        + (f" ({'; '.join(j.chains)})" if j.chains else " (no input chain)"))
    for (proto, to_mgmt), want in (
            (("tcp", True), want_mgmt), (("tcp", False), want_other),
            *(((p, m), NONE) for p in PROTOS[1:] for m in (True, False))):
        where = f"{proto} to {address if to_mgmt else 'another address'}"
        must, may = j.open_must[(proto, to_mgmt)], j.open_may[(proto, to_mgmt)]
        if minus(want, must):
            problems.append(f"{where}: not certainly open: {show(minus(want, must))}")
        if minus(may, want):
            problems.append(f"{where}: open beyond the plan: {show(minus(may, want))}")
    seen = (f"tcp open on {address}: {show(j.open_may[('tcp', True)])}; elsewhere: "
            f"{show(j.open_may[('tcp', False)])}; udp: "
            f"{show(union(j.open_may[('udp', True)], j.open_may[('udp', False)]))}; "
            f"input chains: {'; '.join(j.chains) or 'none'}")
    if j.unknown:
        seen += f"; not interpreted: {'; '.join(j.unknown[:3])}"
    if not problems:
        detail = "nft -j list ruleset" + ("" if facts.init == "systemd" else
                                           " (no systemd here: nothing loads it at boot)")
        return outcome(rule, COMPLIANT, detail, expected, seen)
    ws.put(NFT_CONF, nft_conf(address, ssh_port, ports), mode="755")
    # loaded from the file just written (at boot: nftables.service, FWL-003)
    plan.commands.append((rule.id, f"nft -f {NFT_CONF}"))
    return outcome(rule, CHANGE, "; ".join(problems), expected, seen)
