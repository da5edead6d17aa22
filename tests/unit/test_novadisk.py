"""Lab machines as compute hosts: the Nova release disk and the machines' shape (issue 21)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metalctl_lab import libvirt_lab, novadisk
from metalctl_lab.spec import COMPUTE_MEMORY_MIB, RackSpec


@pytest.mark.parametrize(("path", "escaped"), [
    ("/root/.cache/metalctl/nova", "root-.cache-metalctl-nova"),  # what systemd-escape -p says
    ("/opt/a-b/c", "opt-a\\x2db-c"),
    ("/.x/y", "\\x2ex-y"),
])
def test_mount_unit_names_are_systemd_escaped(path: str, escaped: str) -> None:
    assert novadisk.systemd_escape_path(path) == escaped


def test_the_installed_system_mounts_the_disk_read_only_when_it_appears(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("METALCTL_NOVA_VENV", str(tmp_path / "nova"))
    name, unit, rule = novadisk.mount_unit()
    assert name == f"{novadisk.systemd_escape_path(str(tmp_path / 'nova'))}.mount"
    assert f"Where={tmp_path / 'nova'}\n" in unit
    assert f"What=/dev/disk/by-label/{novadisk.LABEL}\n" in unit
    assert re.search(r"^Options=ro\b", unit, re.M)
    assert "[Install]" not in unit  # wanted by udev only: no wait when the disk is absent
    assert f'ENV{{ID_FS_LABEL}}=="{novadisk.LABEL}"' in rule
    assert f'SYSTEMD_WANTS}}+="{name}"' in rule


def test_installable_machines_are_compute_sized_with_two_numa_cells() -> None:
    spec = RackSpec(provnet=210)
    memory_mib, cores, threads = spec.domain_shape
    assert memory_mib == COMPUTE_MEMORY_MIB >= 1536  # docs/lab.md: 512 MiB is too little
    xml = libvirt_lab.domain_xml(spec, 0, Path("/lab/d.qcow2"), Path("/lab"), "br0",
                                 Path("/cache/nova.img"))
    cells = re.findall(r"<cell id='(\d)' cpus='[\d-]+' memory='(\d+)'", xml)
    assert cells == [("0", str(memory_mib // 2)), ("1", str(memory_mib // 2))]
    assert f"<memory unit='MiB'>{memory_mib}</memory>" in xml


def test_the_nova_disk_is_read_only_and_after_the_system_disk() -> None:
    spec = RackSpec(provnet=210)
    xml = libvirt_lab.domain_xml(spec, 0, Path("/lab/d.qcow2"), Path("/lab"), "br0",
                                 Path("/cache/nova.img"))
    nova = re.search(r"<disk [^\n]*nova\.img.*?</disk>", xml, re.S)
    assert nova
    assert "<readonly/>" in nova.group(0)
    assert "dev='vdb'" in nova.group(0)
    assert xml.index("dev='vda'") < xml.index("dev='vdb'")
    bare = libvirt_lab.domain_xml(spec, 0, Path("/lab/d.qcow2"), Path("/lab"), "br0")
    assert "vdb" not in bare
