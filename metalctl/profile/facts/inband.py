"""In-band facts: what the running OS says about its own topology.

One read-only script (``collect.sh``) gathers ``lscpu -J``, ``/proc/cpuinfo``,
``/proc/cmdline``, ``/sys/devices/system/node`` and ``/sys/class/net/*/device`` in a
single round trip, locally or over SSH; :func:`parse` turns its output into a
:class:`~metalctl.model.topology.Topology`. The raw output is what the recorded
samples in ``tests/samples/facts/`` hold, so the parser is tested on the same text
a real host produces.
"""

from __future__ import annotations

import json
import re
import subprocess
from importlib import resources

from metalctl.errors import HostError, InputError
from metalctl.model.topology import Cpu, Nic, NumaNode, Topology
from metalctl.ssh import SshTarget, connect, run_script

SOURCE = "inband"


def script() -> str:
    """Return the shipped read-only collection script (``collect.sh``)."""
    return resources.files("metalctl.profile.facts").joinpath("collect.sh").read_text()


def collect_local() -> Topology:
    """Facts of the machine metalctl runs on."""
    proc = subprocess.run(["sh", "-c", script()], capture_output=True, text=True, check=False,
                          timeout=60)
    if proc.returncode != 0:
        raise HostError(host="localhost", reason=f"collector exited {proc.returncode}")
    return parse(proc.stdout, host="localhost")


def collect_ssh(target: SshTarget) -> Topology:
    """Facts of a host over one SSH session (host key checked)."""
    conn = connect(target)
    try:
        return parse(run_script(conn, target, script()), host=target.host)
    finally:
        conn.close()


def _sections(text: str) -> list[tuple[str, str, list[str]]]:
    out: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("### "):
            name, _, arg = line[4:].partition(" ")
            out.append((name, arg.strip(), []))
        elif out:
            out[-1][2].append(line)
    return out


def _int(value: str | int | None) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        return None


def _bool(value: object) -> bool:
    return value is True or str(value).lower() in ("yes", "y", "true", "1")


def parse(text: str, host: str | None = None, path: str = "<collector output>") -> Topology:
    """Parse collector output. Raises InputError naming the section that is malformed."""
    sections = _sections(text)
    if not sections or sections[-1][0] != "end":
        raise InputError(path, "end", "collector output is truncated (no '### end' marker)")
    cpus: list[Cpu] = []
    numa: list[NumaNode] = []
    nics: list[Nic] = []
    vendor = model = cmdline = isolated = None
    flags: frozenset[str] = frozenset()
    unknown: list[str] = []
    for name, arg, lines in sections:
        if name == "lscpu":
            try:
                rows = json.loads("\n".join(lines)).get("cpus") or []
            except json.JSONDecodeError as exc:
                raise InputError(path, "lscpu", f"not JSON: {exc.msg}") from None
            for r in rows:
                # util-linux < 2.38 prints every value as a string ("0", "yes")
                node = _int(r.get("node"))
                cpus.append(Cpu(id=int(r["cpu"]), core=_int(r.get("core")) or 0,
                                socket=_int(r.get("socket")) or 0,
                                node=node if node is not None else 0,
                                online=_bool(r.get("online", True))))
        elif name == "cpuinfo":
            for line in lines:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id":
                    vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(value,
                                                                                  value.lower())
                elif key == "model name":
                    model = value
                elif key == "flags":
                    flags = frozenset(value.split())
        elif name == "cmdline":
            cmdline = " ".join(lines).strip()
        elif name == "isolated":
            isolated = " ".join(lines).strip()
        elif name == "node":
            numa.append(_node(arg, lines, path))
        elif name == "nic":
            nics.append(_nic(arg, lines))
    if not cpus:
        unknown.append("cpus")
    if not numa:
        # no /sys/devices/system/node (CONFIG_NUMA=n): one node holding everything
        unknown.append("numa")
    return Topology(cpus=tuple(cpus), numa=tuple(sorted(numa, key=lambda n: n.id)),
                    nics=tuple(sorted(nics, key=lambda n: n.name)), cpu_vendor=vendor,
                    cpu_model=model, cpu_flags=flags, source=SOURCE, host=host,
                    cmdline=cmdline, isolated=isolated, unknown=tuple(unknown))


def _node(arg: str, lines: list[str], path: str) -> NumaNode:
    node_id = _int(arg)
    if node_id is None:
        raise InputError(path, f"node {arg}", "NUMA node id is not a number")
    memory = None
    pages: dict[int, int] = {}
    for line in lines:
        m = re.search(r"MemTotal:\s+(\d+)\s*kB", line)
        if m:
            memory = int(m.group(1)) // 1024
        elif line.startswith("hugepages "):
            _, size, count = line.split()
            pages[int(size)] = int(count)
    return NumaNode(id=node_id, memory_mib=memory, hugepages=pages)


def _hex(value: str) -> str | None:
    value = value.strip().lower()
    return value[2:] if value.startswith("0x") else (value or None)


def _nic(name: str, lines: list[str]) -> Nic:
    kv = {}
    for line in lines:
        key, _, value = line.partition(" ")
        kv[key] = value.strip()
    numa = _int(kv.get("numa_node"))
    speed = _int(kv.get("speed"))
    return Nic(
        name=name, mac=kv.get("mac") or None,
        # -1: the platform does not say (single-node hosts, VMs)
        numa_node=numa if numa is not None and numa >= 0 else None,
        driver=kv.get("driver") or None, pci_address=kv.get("pci_address") or None,
        vendor_id=_hex(kv.get("vendor", "")), device_id=_hex(kv.get("device", "")),
        vf_device_id=_hex(kv.get("vf_device", "")),
        speed_mbps=speed if speed and speed > 0 else None,
        max_vfs=_int(kv.get("totalvfs")) if kv.get("totalvfs") else 0,
        current_vfs=_int(kv.get("numvfs")),
    )
