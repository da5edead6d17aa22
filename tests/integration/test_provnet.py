"""The provisioning network itself (metalctl_lab.provnet), on 10.204.0.0/24 with a real
namespace, bridge, veth and dnsmasq: idempotent up and down, nothing left behind."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from metalctl.errors import LabError
from metalctl.provision import dnsmasq
from metalctl_lab.procs import alive
from metalctl_lab.provnet import ProvNet

MAC = "52:54:00:cc:04:01"


def _ip(*args: str) -> str:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False).stdout


@pytest.fixture
def net(tmp_path: Path):
    net = ProvNet(tmp_path, 204)
    yield net
    net.down()


def test_up_twice_serves_dhcp_config_and_down_twice_leaves_nothing(net: ProvNet):
    net.up()
    net.up()  # idempotent: completes and checks, adds nothing twice
    assert net.namespace in _ip("netns", "list")
    inside = _ip("-n", net.namespace, "-br", "addr", "show", net.bridge)
    assert "10.204.0.2/24" in inside
    assert "fd00:204::2/64" in inside
    host = _ip("-br", "addr", "show", net.host_interface)
    assert host.count("10.204.0.1/24") == 1
    assert Path(f"/proc/sys/net/ipv6/conf/{net.host_interface}/accept_ra").read_text() == "0\n"
    assert f"master {net.bridge}" in _ip("-n", net.namespace, "link", "show",
                                         net.port_interface)

    cfg = dnsmasq.DnsmasqConfig(boot_url=f"http://{net.host_address}:8080",
                                hosts=(dnsmasq.DhcpHost(MAC, net.pinned_address(1)),),
                                **net.dnsmasq_settings())
    conf = dnsmasq.write(cfg, net.files / "dnsmasq.conf")
    first = net.start_dnsmasq(conf)
    second = net.start_dnsmasq(conf)  # a restart: the first one is gone
    assert not alive(first)
    assert net.dnsmasq_pid() == second
    log = net.dnsmasq_log.read_text()
    assert "DHCP, IP range 10.204.0.100 -- 10.204.0.199" in log
    assert "router advertisement on fd00:204::" in log
    # dnsmasq listens inside the namespace, never in the root namespace
    udp = subprocess.run(net.netns_argv(["ss", "-Hlunp", "sport", "=", ":67"]),
                         capture_output=True, text=True, check=False).stdout
    assert "dnsmasq" in udp
    root = subprocess.run(["ss", "-Hlunp", "sport", "=", ":67"], capture_output=True,
                          text=True, check=False).stdout
    assert f"pid={second}," not in root

    net.down()
    net.down()
    assert not alive(second)
    assert net.namespace not in _ip("netns", "list")
    assert not _ip("link", "show", net.host_interface)


def test_a_refused_configuration_starts_nothing(net: ProvNet, tmp_path: Path):
    net.up()
    bad = tmp_path / "bad.conf"
    bad.write_text("interface=mcprov204br\ndhcp-range=not-an-address\n")
    with pytest.raises(LabError, match="dnsmasq refused"):
        net.start_dnsmasq(bad)
    assert net.dnsmasq_pid() is None


def test_leases_are_read_from_dnsmasqs_file(net: ProvNet):
    net.files.mkdir(parents=True)
    net.lease_file.write_text(f"1795923657 {MAC.upper()} 10.204.0.11 h1 01:52:54\n"
                              "1795923658 52:54:00:cc:04:02 10.204.0.120 * *\n")
    leases = net.leases()
    assert [(le.mac, le.ip, le.hostname) for le in leases] == [
        (MAC, "10.204.0.11", "h1"), ("52:54:00:cc:04:02", "10.204.0.120", None)]


def test_network_numbers_outside_the_range_are_refused(tmp_path: Path):
    with pytest.raises(LabError):
        ProvNet(tmp_path, 0)
    with pytest.raises(LabError):
        ProvNet(tmp_path, 255)
    with pytest.raises(LabError):
        ProvNet(tmp_path, 204).pinned_address(90)  # 10.204.0.100 on is the dynamic range


def test_a_namespace_of_another_lab_is_never_taken_over(net: ProvNet, tmp_path: Path):
    net.up()
    other = ProvNet(tmp_path / "other-lab", 204)
    with pytest.raises(LabError, match="not this lab's"):
        other.up()
    other.down()  # nothing of its own to remove; never another lab's namespace
    assert net.namespace in _ip("netns", "list")
    net.up()  # the owner still completes its own
