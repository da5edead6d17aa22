"""MAC addresses as untrusted input: a port in Ironic needs a unicast hardware address.

Broadcast (``ff:ff:ff:ff:ff:ff``), multicast (the I/G bit, the lowest bit of the first
octet, set: IEEE 802-2014 §8.2) and all-zero addresses are never a NIC's own address:
BMCs report them for absent or virtual ports, and Ironic would accept them as ports,
so a PXE request from nowhere could match a node.
"""

from __future__ import annotations


def mac_problem(mac: str) -> str | None:
    """Why a canonical ``aa:bb:cc:dd:ee:ff`` MAC cannot be a port's address, or None."""
    octets = mac.split(":")
    if len(octets) != 6 or not all(len(o) == 2 for o in octets):
        return "not a MAC address"
    try:
        first = int(octets[0], 16)
        if all(int(o, 16) == 0 for o in octets):
            return "all-zero MAC"
    except ValueError:
        return "not a MAC address"
    if all(o.lower() == "ff" for o in octets):
        return "broadcast MAC"
    if first & 0x01:
        return "multicast MAC"
    return None
