"""The SSH test hosts the harden and audit tests share: a HostLab running for a module
(network namespaces with their own /etc and sshd), a site PKI, a host's spec and SSH
policy, and a digest of what changed on a host.

A helper module: test modules import from here, never from each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from metalctl import hosts
from metalctl.pki import SitePKI
from metalctl_lab.hosts import HostLab


def running(factory: pytest.TempPathFactory, name: str, net: int,
            indices: tuple[int, ...]) -> Iterator[HostLab]:
    """A module fixture's body: the hosts ``indices`` of a lab on ``10.<net>.0.0/24``."""
    with HostLab(factory.mktemp(name), net=net).running(indices) as lab:
        yield lab


def site_pki(factory: pytest.TempPathFactory, name: str, organization: str) -> SitePKI:
    """A fresh site CA."""
    pki = SitePKI(factory.mktemp(name), organization=organization)
    pki.init()
    return pki


def spec(lab: HostLab, i: int) -> hosts.HostSpec:
    """Host ``i`` as the inventory names it (``h<i>``), managed on its lab address."""
    return hosts.HostSpec(name=f"h{i}", ssh=f"root@{lab.address(i)}",
                          mgmt_address=lab.address(i))


def ssh_policy(lab: HostLab) -> dict[str, Any]:
    """The SSH options harden and audit take to reach the lab's hosts."""
    return {"key_file": lab.client_key, "known_hosts": lab.known_hosts}


def changed_sums(lab: HostLab, i: int) -> str:
    """Digests of the files changed on host ``i`` since it was seeded, and of all /etc:
    equal before and after means the host was not written to."""
    out = lab.exec(i, "find /etc /var -xdev -type f -newer /etc/hostname -print0 2>/dev/null "
                      "| sort -z | xargs -0 -r sha256sum; find /etc -type f -print0 | sort -z "
                      "| xargs -0 sha256sum | sha256sum")
    return out.stdout
