"""Read-only fact gathering for hardening and audit: one script, one SSH round trip.

The script prints ``### <section> <arg>`` blocks; config files that rules edit come
back in full (base64), secrets (private keys) only as SHA-256, never as content.
Effective state is read alongside the files: init system, LSM runtime state, running
processes, listening sockets, socket-unit states.
"""

from __future__ import annotations

import base64
import io
import shlex
import tarfile
from dataclasses import dataclass, field

from metalctl.errors import HostError


@dataclass
class FileFact:
    """What was read of one file: existence, mode, owner, hash and, when asked, content."""
    exists: bool
    mode: str | None = None
    owner: str | None = None
    group: str | None = None
    sha256: str | None = None
    content: str | None = None  # only for files gathered with content


@dataclass
class HostFacts:
    """Everything gathered from a host in one SSH session that rules evaluate."""
    os_id: str = ""
    os_like: str = ""
    version: str = ""
    family: str = "unknown"  # rhel | debian
    init: str = "sysv"
    selinux_enabled: bool = False
    getenforce: str = ""
    #: AppArmor enforcing in the running kernel: its module says ``Y`` and, where the
    #: kernel lists its active LSMs, AppArmor is among them
    apparmor_enabled: bool = False
    #: the running kernel's active LSMs (``/sys/kernel/security/lsm``); None: unreadable
    lsms: list[str] | None = None
    #: ``/sys/module/apparmor/parameters/enabled``: Y, N, or "" (no AppArmor in the kernel)
    apparmor_module: str = ""
    pkg: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    processes: set[str] = field(default_factory=set)
    listening: set[str] = field(default_factory=set)  # "addr:port"
    files: dict[str, FileFact] = field(default_factory=dict)
    exists: dict[str, bool] = field(default_factory=dict)
    units: dict[str, str] = field(default_factory=dict)
    probes: dict[str, str] = field(default_factory=dict)
    binaries: set[str] = field(default_factory=set)
    #: why this host shares a kernel it does not own (a container or namespace: not the
    #: initial PID or user namespace); empty: it owns it
    kernel_shared: list[str] = field(default_factory=list)
    #: container markers seen (/.dockerenv, systemd-detect-virt): reported, not evidence
    kernel_markers: list[str] = field(default_factory=list)
    #: the host has a network namespace of its own (init-only net.core keys invisible)
    own_netns: bool = False

    def file(self, path: str) -> FileFact:
        """Return the fact of ``path`` (not existing when it was not gathered or absent)."""
        return self.files.get(path) or FileFact(exists=False)

    def text(self, path: str) -> str:
        """Return the content of ``path``, or an empty string when absent or not read."""
        f = self.file(path)
        return f.content if f.exists and f.content is not None else ""


@dataclass
class GatherSpec:
    """What the rules need gathered: paths with content or hash, globs, units, probes."""
    content: set[str] = field(default_factory=set)  # paths whose content is needed
    hashed: set[str] = field(default_factory=set)  # paths compared by hash only
    globs: set[str] = field(default_factory=set)  # content for every match
    exists: set[str] = field(default_factory=set)
    units: set[str] = field(default_factory=set)
    probes: dict[str, str] = field(default_factory=dict)  # id -> read-only command
    #: probes whose output may be longer than ``PROBE_LIMIT`` bytes (id -> bytes kept)
    probe_limits: dict[str, int] = field(default_factory=dict)
    #: mode/owner only for every match (never the content: nova.conf holds credentials)
    stat_globs: set[str] = field(default_factory=set)


#: bytes of a probe's output kept, unless the probe asks for more (``probe_limits``)
PROBE_LIMIT = 8000
BINARIES = ("virtproxyd", "virtqemud", "libvirtd", "semanage", "restorecon", "setenforce",
            "auditd", "aa-status")


def script(spec: GatherSpec) -> str:
    """Return the read-only shell script that gathers ``spec`` in one session."""
    q = shlex.quote
    content = sorted(spec.content) + sorted(spec.globs)  # globs expand on the host
    everything = sorted(spec.content | spec.hashed) + sorted(spec.globs | spec.stat_globs)
    lines = [
        "export LC_ALL=C",
        'echo "### os"; cat /etc/os-release 2>/dev/null',
        'echo "### init"; if [ -d /run/systemd/system ]; then echo systemd; else echo sysv; fi',
        'echo "### selinux"; if selinuxenabled 2>/dev/null; then echo enabled; '
        'else echo disabled; fi; getenforce 2>/dev/null || true',
        'echo "### apparmor"; cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo',
        'echo "### lsm"; cat /sys/kernel/security/lsm 2>/dev/null && echo || echo "?"',
        'echo "### pkg"; command -v dnf >/dev/null 2>&1 && echo dnf; '
        'command -v apt-get >/dev/null 2>&1 && echo apt; true',
        'echo "### groups"; getent group | cut -d: -f1',
        'echo "### procs"; ps -eo comm= 2>/dev/null',
        # kernel ownership: the PID and user namespaces are the kernel's initial ones
        # (their inode numbers are kernel constants, PROC_PID_INIT_INO/PROC_USER_INIT_INO);
        # kthreadd as PID 2 where /proc/self/ns cannot be read. Container markers
        # (/.dockerenv, systemd-detect-virt) are reported, not evidence: a VM built
        # from a container image carries them and owns its kernel
        'echo "### kernel"; p=$(readlink /proc/self/ns/pid 2>/dev/null); '
        'if [ -n "$p" ]; then [ "$p" = "pid:[4026531836]" ] || '
        'echo "pidns: $p is not the initial PID namespace"; '
        'else [ "$(cat /proc/2/comm 2>/dev/null)" = kthreadd ] || '
        'echo "pidns: no kthreadd as PID 2 (not the initial PID namespace)"; fi; '
        'u=$(readlink /proc/self/ns/user 2>/dev/null); [ -z "$u" ] || '
        '[ "$u" = "user:[4026531837]" ] || echo "userns: $u is not the initial user namespace"; '
        'v=$(systemd-detect-virt --container 2>/dev/null) && echo "marker: container $v"; '
        'for m in /run/.containerenv /.dockerenv; do [ -e $m ] && echo "marker: $m"; done; '
        "awk '$1 != 0 || $2 != 0 || $3 != 4294967295 {print \"userns: uid_map \" $0; exit}' "
        "/proc/self/uid_map 2>/dev/null; "
        '[ -e /proc/sys/net/core/netdev_max_backlog ] || echo "netns: own"; true',
        "echo \"### listen\"; ss -ltnH 2>/dev/null | awk '{print $4}'",
        'echo "### binaries"; for b in ' + " ".join(BINARIES)
        + '; do command -v $b >/dev/null 2>&1 && echo $b; done; true',
        # three processes for every file, however many: few forks, one round trip
        "files=$(for f in " + " ".join(_word(p) for p in everything)
        + '; do [ -f "$f" ] && printf "%s\\n" "$f"; done)',
        "contents=$(for f in " + " ".join(_word(p) for p in content)
        + '; do [ -f "$f" ] && printf "%s\\n" "$f"; done)',
        'echo "### stat"; [ -n "$files" ] && echo "$files" | tr "\\n" "\\0" '
        "| xargs -0 stat -c '%n|%a|%U|%G' 2>/dev/null",
        'echo "### sha"; [ -n "$files" ] && echo "$files" | tr "\\n" "\\0" '
        "| xargs -0 sha256sum 2>/dev/null",
        'echo "### tar"; [ -n "$contents" ] && echo "$contents" | '
        "tar -cf - --no-recursion -T - 2>/dev/null | base64 -w0; echo",
    ]
    for path in sorted(spec.exists):
        lines.append(f"echo {q('### exists ' + path)}; "
                     f"if [ -e {q(path)} ]; then echo yes; else echo no; fi")
    if spec.units:
        lines.append("if [ -d /run/systemd/system ]; then")
        for unit in sorted(spec.units):
            lines.append(f"echo {q('### unit ' + unit)}; "
                         f"systemctl is-enabled {q(unit)} 2>/dev/null || true")
        lines.append("fi")
    for pid, cmd in sorted(spec.probes.items()):
        limit = spec.probe_limits.get(pid, PROBE_LIMIT)
        lines.append(f"echo {q('### probe ' + pid)}; ( {cmd} ) 2>&1 | head -c {limit}; echo")
    lines.append('echo "### end"')
    return "\n".join(lines) + "\n"


def _word(path: str) -> str:
    """A path for the shell: quoted, except its glob characters."""
    return "".join(ch if ch in "*?[]" else shlex.quote(ch) if not ch.isalnum() and
                   ch not in "/._-" else ch for ch in path)


def parse(text: str, host: str) -> HostFacts:
    """Parse the output of ``script`` into host facts.

    Raises:
        HostError: the output is truncated (no end marker).
    """
    blocks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("### "):
            name, _, arg = line[4:].partition(" ")
            blocks.append((name, arg, []))
        elif blocks:
            blocks[-1][2].append(line)
    if not blocks or blocks[-1][0] != "end":
        raise HostError(host=host, reason="fact gathering output truncated (no end marker)")
    f = HostFacts()
    for name, arg, body in blocks:
        if name == "os":
            kv = dict(line.split("=", 1) for line in body if "=" in line)
            f.os_id = kv.get("ID", "").strip('"')
            f.os_like = kv.get("ID_LIKE", "").strip('"')
            f.version = kv.get("VERSION_ID", "").strip('"')
            ids = {f.os_id, *f.os_like.split()}
            f.family = "rhel" if ids & {"rhel", "fedora", "centos"} else \
                "debian" if ids & {"debian", "ubuntu"} else "unknown"
        elif name == "init":
            f.init = (body[0].strip() if body else "sysv") or "sysv"
        elif name == "selinux":
            f.selinux_enabled = bool(body) and body[0].strip() == "enabled"
            f.getenforce = body[1].strip() if len(body) > 1 else ""
        elif name == "apparmor":
            f.apparmor_module = body[0].strip() if body else ""
        elif name == "lsm":
            text = body[0].strip() if body else "?"
            f.lsms = None if text == "?" else [x for x in text.split(",") if x]
        elif name == "pkg":
            f.pkg = {b.strip() for b in body if b.strip()}
        elif name == "groups":
            f.groups = {b.strip() for b in body if b.strip()}
        elif name == "procs":
            f.processes = {b.strip() for b in body if b.strip()}
        elif name == "kernel":
            f.own_netns = "netns: own" in body
            f.kernel_markers = [b[8:].strip() for b in body if b.startswith("marker: ")]
            f.kernel_shared = [b.strip() for b in body if b.strip() and b != "netns: own"
                               and not b.startswith("marker: ")]
        elif name == "listen":
            f.listening = {b.strip() for b in body if b.strip()}
        elif name == "binaries":
            f.binaries = {b.strip() for b in body if b.strip()}
        elif name == "stat":
            for line in body:
                path, _, rest = line.partition("|")
                mode, owner, group = (rest.split("|") + [None, None, None])[:3]
                f.files[path] = FileFact(exists=True, mode=mode, owner=owner, group=group)
        elif name == "sha":
            for line in body:
                digest, _, path = line.partition("  ")
                if path in f.files:
                    f.files[path].sha256 = digest
        elif name == "tar":
            data = "".join(body).strip()
            if data:
                with tarfile.open(fileobj=io.BytesIO(base64.b64decode(data))) as tar:
                    for member in tar.getmembers():
                        path = "/" + member.name.lstrip("/")
                        fobj = tar.extractfile(member) if member.isfile() else None
                        if fobj is not None and path in f.files:
                            f.files[path].content = fobj.read().decode("utf-8", "replace")
        elif name == "exists":
            f.exists[arg] = bool(body) and body[0].strip() == "yes"
        elif name == "unit":
            f.units[arg] = body[0].strip() if body and body[0].strip() else "absent"
        elif name == "probe":
            f.probes[arg] = "\n".join(body).strip()
    f.apparmor_enabled = f.apparmor_module == "Y" and (f.lsms is None or "apparmor" in f.lsms)
    return f
