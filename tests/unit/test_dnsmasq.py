"""The dnsmasq configuration metalctl writes, checked by the real ``dnsmasq --test``.

dnsmasq is Debian's ``dnsmasq-base``; the tests fail (they do not skip) when it is
missing, because a configuration nobody checked is what this module exists to avoid.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from metalctl.errors import InputError
from metalctl.provision import dnsmasq
from metalctl.provision.dnsmasq import DhcpHost, DnsmasqConfig

BOOT = "http://10.98.0.1:8080"
HOSTS = (DhcpHost("52-54-00-98-00-01", "10.98.0.11", "n1"), DhcpHost("52:54:00:98:00:02"))


def dhcp(**changes) -> DnsmasqConfig:
    base = dict(interface="br-prov", boot_url=BOOT, dhcp_range=("10.98.0.100", "10.98.0.200"),
                netmask="255.255.255.0", tftp_root=Path("/srv/tftp"), hosts=HOSTS,
                known_only=True, lease_file=Path("/var/lib/metalctl/dnsmasq.leases"))
    base.update(changes)
    return DnsmasqConfig(**base)


def proxy(**changes) -> DnsmasqConfig:
    base = dict(interface="eth1", boot_url=BOOT, mode="proxy", proxy_network="10.98.0.0",
                tftp_root=Path("/srv/tftp"), hosts=(DhcpHost("52:54:00:98:00:01"),))
    base.update(changes)
    return DnsmasqConfig(**base)


def options(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


def test_dhcp_mode_passes_dnsmasq_test_and_says_what_it_must(tmp_path):
    path = dnsmasq.write(dhcp(), tmp_path / "metalctl-dnsmasq.conf")
    assert {
        "port=0", "dhcp-match=set:ipxe,175",
        "dhcp-range=10.98.0.100,10.98.0.200,255.255.255.0,1h",
        f"dhcp-boot=tag:ipxe,{BOOT}/boot.ipxe",
        "dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe",
        "dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi",
        "enable-tftp", "tftp-root=/srv/tftp", "enable-ra",
        "dhcp-range=::,constructor:br-prov,ra-only",
        "dhcp-host=52:54:00:98:00:01,10.98.0.11,n1", "dhcp-host=52:54:00:98:00:02",
        "dhcp-ignore=tag:!known",
    } - set(options(path.read_text())) == set()
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_proxy_mode_passes_dnsmasq_test(tmp_path):
    path = dnsmasq.write(proxy(), tmp_path / "proxy.conf")
    opts = options(path.read_text())
    assert {
        "dhcp-range=10.98.0.0,proxy",
        'pxe-service=tag:!ipxe,x86PC,"metalctl: iPXE",undionly.kpxe',
        'pxe-service=tag:!ipxe,X86-64_EFI,"metalctl: iPXE",snponly.efi',
    } - set(opts) == set()
    assert not any(o.startswith("dhcp-range=10.98.0.100") for o in opts)


@pytest.mark.parametrize("cfg", [
    dhcp(tftp_root=None, ipv6_ra=False, hosts=(), known_only=False, lease_file=None,
         netmask=None),
    dhcp(router="10.98.0.1", lease_time="infinite", log_dhcp=True,
         pid_file=Path("/run/metalctl-dnsmasq.pid")),
    proxy(tftp_root=None, ipv6_ra=False, hosts=()),
], ids=["minimal", "router-and-logging", "proxy-ipxe-only"])
def test_variants_pass_dnsmasq_test(cfg, tmp_path):
    dnsmasq.write(cfg, tmp_path / "v.conf")


def test_dnsmasq_test_refusal_names_the_line(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("port=0\ndhcp-range=not-an-address\n")
    with pytest.raises(InputError) as info:
        dnsmasq.check(bad)
    assert "bad dhcp-range at line 2" in str(info.value)


@pytest.mark.parametrize(("changes", "field"), [
    ({"interface": "br0\nenable-tftp"}, "interface"),
    ({"boot_url": "http://10.98.0.1:8080/\ndhcp-boot=evil"}, "boot_url"),
    ({"boot_url": "tftp://10.98.0.1/x"}, "boot_url"),
    ({"dhcp_range": ("10.98.0.200", "10.98.0.100")}, "dhcp_range"),
    ({"dhcp_range": ("10.98.0.100", "fe80::1")}, "dhcp_range"),
    ({"dhcp_range": None}, "dhcp_range"),
    ({"mode": "relay"}, "mode"),
    ({"lease_time": "1h\nport=53"}, "lease_time"),
    ({"hosts": (DhcpHost("52:54:00:98:00"),)}, "mac"),
    ({"hosts": (DhcpHost("52:54:00:98:00:01", "10.98.0.300"),)}, "hosts[0].ip"),
    ({"hosts": (), "known_only": True}, "known_only"),
    ({"hosts": (DhcpHost("52:54:00:98:00:01", "10.98.0.11", "1234"),)}, "hosts[0].name"),
    ({"hosts": (DhcpHost("52:54:00:98:00:01", "10.98.0.11", "12h"),)}, "hosts[0].name"),
    ({"tftp_root": Path("relative/dir")}, "tftp_root"),
])
def test_bad_values_are_refused_before_anything_is_written(changes, field, tmp_path):
    target = tmp_path / "x.conf"
    with pytest.raises(InputError) as info:
        dnsmasq.write(dhcp(**changes), target)
    assert info.value.field == field
    assert not target.exists()


def test_proxy_mode_refuses_address_pins():
    with pytest.raises(InputError) as info:
        dnsmasq.render(proxy(hosts=(DhcpHost("52:54:00:98:00:01", "10.98.0.11"),)))
    assert info.value.field == "hosts[0].ip"


def test_a_refused_file_leaves_the_installed_one_alone(tmp_path, monkeypatch):
    target = dnsmasq.write(dhcp(), tmp_path / "live.conf")
    before = target.read_text()
    # a value only dnsmasq knows is wrong: the checker must be what stops it
    monkeypatch.setattr(dnsmasq, "render", lambda cfg: "dhcp-range=nonsense\n")
    with pytest.raises(InputError):
        dnsmasq.write(dhcp(), target)
    assert target.read_text() == before
    assert list(tmp_path.iterdir()) == [target]
