"""The lab Ironic on a rack with a provisioning network: it listens on the network's host
side with the ``ipxe``/``anaconda`` settings, and what a booting machine must reach (the
API for heartbeats, ``http_root`` for iPXE scripts and ks.cfg) answers from inside the
namespace, where the machines are.

Own rack on 127.26 with provisioning network 10.203.0.0/24: never at the same time as
test_lab_pxe in another process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from metalctl_lab import rack
from metalctl_lab.procs import alive

SPEC = rack.RackSpec(octet=26, redfish_bmcs=0, ipmi_bmcs=0, libvirt_domains=1, dead=0,
                     ironic=True, provnet=203)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    with rack.running(SPEC, tmp_path_factory.mktemp("ironiclab")) as state:
        yield state


def _from_the_namespace(state, url: str) -> subprocess.CompletedProcess[str]:
    net = rack.provnet(state)
    assert net is not None
    return subprocess.run(net.netns_argv(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}",
                                          "--max-time", "10", url]),
                          capture_output=True, text=True, check=False)


def test_ironic_listens_on_the_host_side_with_the_anaconda_settings(lab):
    assert lab.ironic_url == "http://10.203.0.1:6385"
    assert requests.get(lab.ironic_url + "/v1", timeout=10).status_code == 200
    conf = Path(lab.directory, "ironic.conf").read_text()
    assert "host_ip = 10.203.0.1" in conf
    assert "http_url = http://10.203.0.1:8089" in conf
    assert "endpoint_override = http://10.203.0.1:6385" in conf
    assert "anaconda" in conf.split("enabled_deploy_interfaces = ", 1)[1].splitlines()[0]


def test_a_machine_on_the_network_reaches_the_api_and_http_root(lab):
    api = _from_the_namespace(lab, "http://10.203.0.1:6385/v1")
    assert api.stdout.rstrip().endswith("200"), api.stderr
    marker = Path(lab.directory, "httpboot", "probe.txt")
    marker.write_text("served from http_root\n")
    got = _from_the_namespace(lab, "http://10.203.0.1:8089/probe.txt")
    assert got.stdout == "served from http_root\n\n200", got.stderr


def test_down_stops_ironic_and_its_http_root(tmp_path: Path, lab):
    pids = {name: pid for name, pid in lab.pids.items() if name.startswith("ironic")}
    assert set(pids) == {"ironic", "ironic-http"}
    rack.down(Path(lab.directory))
    assert not any(alive(pid) for pid in pids.values())
    assert "mcprov203" not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                             text=True, check=False).stdout
