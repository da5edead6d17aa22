"""Address targets for discovery: CIDRs, ranges, single hosts, ``host:port``.

Accepted forms (each may carry a ``https://``, ``http://`` or ``ipmi://`` prefix
that limits the probe to that protocol, and a ``:port`` suffix):

* ``10.1.0.0/24`` — every host address of the network (netaddr, network and
  broadcast excluded for prefixes shorter than /31);
* ``10.1.1.10-10.1.1.40`` or the short form ``10.1.1.10-40``;
* ``10.1.1.5``, ``bmc-r01u12.example``, ``[2001:db8::5]:8443``.

Overlapping targets with the same port and protocol are an input error, not
silently merged: a typo in a range is more often the cause than intent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import netaddr

from metalctl.errors import InputError

SCHEMES = {"https": "redfish", "http": "redfish", "ipmi": "ipmi"}
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


@dataclass(frozen=True)
class Target:
    """One parsed target argument: a set of addresses and how to probe them."""

    text: str
    addresses: netaddr.IPSet | None  # None for a host name
    hostname: str | None
    port: int | None
    scheme: str | None  # "https"/"http"/"ipmi" when forced, else None (try all)

    @property
    def size(self) -> int:
        return 1 if self.addresses is None else self.addresses.size

    def __iter__(self) -> Iterator[str]:
        if self.addresses is None:
            yield str(self.hostname)
            return
        for cidr in self.addresses.iter_cidrs():
            if cidr.version == 4 and cidr.prefixlen < 31 and self._is_whole_network(cidr):
                yield from (str(ip) for ip in cidr.iter_hosts())
            else:
                yield from (str(ip) for ip in cidr)

    def _is_whole_network(self, cidr: netaddr.IPNetwork) -> bool:
        return "/" in self.text


def _split_port(text: str, field: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise InputError(field, text, "expected [IPv6]:port")
        port_text = rest[1:] if rest else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    else:
        host, port_text = text, ""
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InputError(field, text, f"port {port_text!r} is not 1-65535")
    return host, int(port_text)


def parse_target(text: str, field: str = "targets") -> Target:
    """Parse one target argument.

    Raises:
        InputError: naming ``field`` and the offending text.
    """
    raw = text.strip()
    scheme = None
    if "://" in raw:
        scheme, raw = raw.split("://", 1)
        if scheme not in SCHEMES:
            raise InputError(field, text, f"unknown scheme {scheme!r}; use https, http or ipmi")
    host, port = _split_port(raw, field)
    try:
        if "/" in host:
            addrs = netaddr.IPSet(netaddr.IPNetwork(host, flags=netaddr.NOHOST))
        elif "-" in host and re.match(r"^[0-9a-fA-F.:]+-[0-9a-fA-F.:]+$", host):
            start, end = host.split("-")
            if "." in start and "." not in end and ":" not in end:  # 10.1.1.10-40
                end = start.rsplit(".", 1)[0] + "." + end
            addrs = netaddr.IPSet(netaddr.IPRange(start, end))
        elif netaddr.valid_ipv4(host) or netaddr.valid_ipv6(host):
            addrs = netaddr.IPSet([host])
        elif _HOSTNAME.match(host) and not host.replace(".", "").isdigit():
            return Target(text, None, host, port, scheme)
        else:
            raise InputError(field, text, "not a CIDR, range, address or host name")
    except (netaddr.AddrFormatError, ValueError, TypeError) as exc:
        raise InputError(field, text, f"not a valid address range ({exc})") from None
    if addrs.size == 0:
        raise InputError(field, text, "range is empty (end before start?)")
    return Target(text, addrs, None, port, scheme)


def parse_targets(texts: Sequence[str], *, max_addresses: int = 65536,
                  source: str = "targets") -> list[Target]:
    """Parse all targets and reject overlaps (same port and protocol) and huge scans.

    Raises:
        InputError: the first bad or overlapping target, by index.
    """
    targets = [parse_target(t, f"{source}[{i}]") for i, t in enumerate(texts)]
    for i, a in enumerate(targets):
        for j in range(i):
            b = targets[j]
            if (a.port, a.scheme) != (b.port, b.scheme):
                continue
            same_name = a.hostname is not None and a.hostname == b.hostname
            both_ip = a.addresses is not None and b.addresses is not None
            if same_name or (both_ip and (a.addresses & b.addresses).size):
                raise InputError(
                    f"{source}[{i}]", a.text, f"overlaps {source}[{j}] {b.text!r}"
                )
    total = sum(t.size for t in targets)
    if total > max_addresses:
        raise InputError(source, " ".join(texts),
                         f"{total} addresses exceed --max-addresses {max_addresses}")
    return targets
