"""Address targets for discovery: CIDRs, ranges, single hosts, ``host:port``.

Accepted forms (each may carry a ``https://``, ``http://`` or ``ipmi://`` prefix
that limits the probe to that protocol, and a ``:port`` suffix):

* ``10.1.0.0/24`` — every host address of the network (netaddr, network and
  broadcast excluded for prefixes shorter than /31);
* ``10.1.1.10-10.1.1.40`` or the short form ``10.1.1.10-40``;
* ``10.1.1.5``, ``bmc-r01u12.example``, ``[2001:db8::5]:8443``.

Overlapping targets with the same port and protocol (default ports filled in: ``a``
and ``a:623`` both probe IPMI on 623) are an input error, not silently merged: a typo
in a range is more often the cause than intent. Host names
compare case-insensitively (they are kept lower-cased) and IPv4-mapped IPv6 addresses
(``::ffff:10.0.0.1``) are read as the IPv4 address they are. The check sorts the
address spans once and sweeps them (n log n), so thousands of targets parse at once.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import netaddr

from metalctl.errors import InputError

SCHEMES = {"https": "redfish", "http": "redfish", "ipmi": "ipmi"}
#: the port each scheme probes when a target gives none (discover's defaults)
DEFAULT_PORTS = {"https": 443, "http": 80, "ipmi": 623}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Target:
    """One parsed target argument: a set of addresses and how to probe them."""

    text: str
    addresses: netaddr.IPSet | None  # None for a host name
    hostname: str | None  # lower case
    port: int | None
    scheme: str | None  # "https"/"http"/"ipmi" when forced, else None (try all)
    #: a CIDR was given: an IPv4 network's own and broadcast addresses are skipped
    network: bool = False

    @property
    def probes(self) -> frozenset[tuple[str, int]]:
        """What probing the target knocks on, as (scheme, port) with default ports
        filled in (https 443, http 80, ipmi 623; no scheme: Redfish over https and IPMI):
        ``a`` and ``a:623`` both knock on ``ipmi`` 623, so they overlap."""
        if self.scheme is not None:
            return frozenset({(self.scheme, self.port or DEFAULT_PORTS[self.scheme])})
        return frozenset({("https", self.port or DEFAULT_PORTS["https"]),
                          ("ipmi", self.port or DEFAULT_PORTS["ipmi"])})

    @property
    def size(self) -> int:
        """How many addresses iterating the target yields."""
        if self.addresses is None:
            return 1
        if not self.network:
            return self.addresses.size
        return sum(c.size - 2 if c.version == 4 and c.prefixlen < 31 else c.size
                   for c in self.addresses.iter_cidrs())

    def __iter__(self) -> Iterator[str]:
        if self.addresses is None:
            yield str(self.hostname)
            return
        for cidr in self.addresses.iter_cidrs():
            if self.network and cidr.version == 4 and cidr.prefixlen < 31:
                yield from (str(ip) for ip in cidr.iter_hosts())
            else:
                yield from (str(ip) for ip in cidr)


def _split_port(text: str, field: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            raise InputError(field, text, "unclosed '[': expected [IPv6] or [IPv6]:port")
        if not (netaddr.valid_ipv6(host) or _is_v6_network(host)):
            raise InputError(field, text, f"{host!r} in brackets is not an IPv6 address")
        if rest and not rest.startswith(":"):
            raise InputError(field, text, "expected [IPv6]:port")
        port_text = rest[1:] if rest else ""
        if rest and not port_text:
            raise InputError(field, text, "':' without a port")
    elif "]" in text:
        raise InputError(field, text, "']' without '['")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        if not port_text:
            raise InputError(field, text, "':' without a port")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(field, text, f"port {port_text!r} is not 1-65535")
    return host, int(port_text)


def _is_v6_network(text: str) -> bool:
    try:
        return "/" in text and netaddr.IPNetwork(text).version == 6
    except (netaddr.AddrFormatError, ValueError, TypeError):
        return False


_MAPPED = netaddr.IPNetwork("::ffff:0.0.0.0/96")


def _unmap(addrs: netaddr.IPSet) -> netaddr.IPSet:
    """IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``) become the IPv4 addresses."""
    out = netaddr.IPSet()
    for r in addrs.iter_ipranges():
        if r.version == 6 and r.first >= _MAPPED.first and r.last <= _MAPPED.last:
            out.add(netaddr.IPRange(netaddr.IPAddress(r.first - _MAPPED.first, 4),
                                    netaddr.IPAddress(r.last - _MAPPED.first, 4)))
        else:
            out.add(r)
    return out


def parse_target(text: str, field: str = "targets") -> Target:
    """Parse one target argument.

    Raises:
        InputError: naming ``field`` and the offending text.
    """
    raw = text.strip()
    scheme = None
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        scheme = scheme.lower()
        if scheme not in SCHEMES:
            raise InputError(field, text, f"unknown scheme {scheme!r}; use https, http or ipmi")
    if not raw:
        raise InputError(field, text, "empty target")
    if "@" in raw:  # never echoed: what precedes '@' is a user name and a password
        raise InputError(field, "(target)", "a user name or password in a target is not "
                                            "accepted; name a credential set (--credentials)")
    host, port = _split_port(raw, field)
    network = "/" in host
    try:
        if network:
            addrs = netaddr.IPSet(netaddr.IPNetwork(host, flags=netaddr.NOHOST))
        elif "-" in host and re.match(r"^[0-9a-fA-F.:]+-[0-9a-fA-F.:]+$", host):
            start, end = host.split("-")
            if "." in start and "." not in end and ":" not in end:  # 10.1.1.10-40
                end = start.rsplit(".", 1)[0] + "." + end
            addrs = netaddr.IPSet(netaddr.IPRange(start, end))
        elif netaddr.valid_ipv4(host, flags=netaddr.INET_PTON) or netaddr.valid_ipv6(host):
            addrs = netaddr.IPSet([host])
        elif _HOSTNAME.match(host) and not host.replace(".", "").isdigit():
            return Target(text, None, host.lower(), port, scheme)
        else:
            raise InputError(field, text, "not a CIDR, range, address or host name")
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise InputError(field, text, f"not a valid address range ({exc})") from None
    if addrs.size == 0:
        raise InputError(field, text, "range is empty (end before start?)")
    return Target(text, _unmap(addrs), None, port, scheme, network)


def _first_overlap(targets: Sequence[Target]) -> tuple[int, int] | None:
    """The first pair (later, earlier) of targets sharing an address and a probe (scheme
    and port, default ports filled in: ``a`` and ``a:623`` share IPMI on 623).

    One sort and one sweep over the address spans of each (scheme, port) group.
    """
    names: dict[tuple[object, ...], int] = {}
    spans: dict[tuple[object, ...], list[tuple[int, int, int]]] = defaultdict(list)
    hits: list[tuple[int, int]] = []
    for i, t in enumerate(targets):
        for probe in sorted(t.probes):
            if t.addresses is None:
                key = (probe, t.hostname)
                if key in names and names[key] != i:
                    hits.append((i, names[key]))
                names.setdefault(key, i)
                continue
            for r in t.addresses.iter_ipranges():
                spans[(probe, r.version)].append((r.first, r.last, i))
    for group in spans.values():
        group.sort()
        end, owner = -1, -1
        for first, last, i in group:
            if first <= end and owner != i:
                hits.append((max(i, owner), min(i, owner)))
            if last > end:
                end, owner = last, i
    return min(hits) if hits else None


def parse_targets(texts: Sequence[str], *, max_addresses: int = 65536,
                  source: str = "targets") -> list[Target]:
    """Parse all targets and reject overlaps (same port and protocol) and huge scans.

    Raises:
        InputError: the first bad or overlapping target, by index.
    """
    targets = [parse_target(t, f"{source}[{i}]") for i, t in enumerate(texts)]
    overlap = _first_overlap(targets)
    if overlap:
        i, j = overlap
        raise InputError(f"{source}[{i}]", targets[i].text,
                         f"overlaps {source}[{j}] {targets[j].text!r}")
    total = sum(t.addresses.size if t.addresses is not None else 1 for t in targets)
    if total > max_addresses:
        raise InputError(source, f"{len(texts)} targets",
                         f"{total} addresses exceed --max-addresses {max_addresses}")
    return targets
