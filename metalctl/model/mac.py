"""MAC addresses as untrusted input: a port in Ironic needs a unicast hardware address.

Broadcast (``ff:ff:ff:ff:ff:ff``), multicast (the I/G bit, the lowest bit of the first
octet, set: IEEE 802-2014 §8.2) and all-zero addresses are never a NIC's own address:
BMCs report them for absent or virtual ports, and Ironic would accept them as ports,
so a PXE request from nowhere could match a node.
"""

from __future__ import annotations

import re


def mac_problem(mac: str) -> str | None:
    """Why ``mac`` cannot be a node's port (all-zero, broadcast, multicast), or ``None``."""
    digits = re.sub(r"[^0-9a-fA-F]", "", mac)
    if len(digits) != 12 or len(re.sub(r"[0-9a-fA-F:.-]", "", mac)):
        return f"{mac!r} is not a MAC address"
    value = int(digits, 16)
    if value == 0:
        return f"{mac} is the all-zero MAC"
    if value == 0xFFFFFFFFFFFF:
        return f"{mac} is the broadcast MAC"
    if value >> 40 & 1:  # I/G bit of the first octet
        return f"{mac} is a multicast MAC"
    return None
