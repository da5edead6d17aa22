"""Carry a plan out on a host: atomic writes with backups, fix commands, handlers.

One shell script per host, sent on stdin (file contents, private keys included, never
appear on a command line where ``ps`` would show them). Every file is written to a
temporary file in its own directory with ``umask 077``, given its owner and mode, then
renamed over the target (atomic); the previous version is kept under
``/var/backups/metalctl/<path>.<timestamp>`` (outside config directories, which read
every file they hold). Each step prints a marker, so an interrupted run says how far it
got, and a re-run converges: it plans only what is still missing.
"""

from __future__ import annotations

import base64
import shlex
import time
from collections.abc import Collection

from metalctl.rules.plan import FileChange, RulePlan

HANDLERS = {
    # sysv (Debian without systemd, the lab hosts): virtlogd first, libvirtd reads
    # LIBVIRTD_ARGS from /etc/default/libvirtd
    ("libvirtd", "sysv"): "/etc/init.d/virtlogd start >/dev/null 2>&1 || true; "
                          "/etc/init.d/libvirtd restart",
    # socket activation: the service must be down while its sockets (re)bind, or systemd
    # refuses ("Socket service ... already active"); drop-ins need a daemon-reload
    ("libvirtd", "systemd"): "systemctl daemon-reload; systemctl stop {daemon}.service; "
                             "for s in {daemon}.socket {daemon}-ro.socket {daemon}-admin.socket "
                             "{daemon}-tls.socket; do systemctl is-enabled --quiet $s && "
                             "systemctl restart $s; done; systemctl start {daemon}.service",
}


def stamp() -> str:
    """The UTC stamp of the backups a run makes (``/var/backups/metalctl<path>.<stamp>``)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def backup_path(path: str, when: str) -> str:
    return f"/var/backups/metalctl{path}.{when}"


def _write(change: FileChange, when: str) -> list[str]:
    """Write one file atomically: temporary file in its directory, owner, mode, backup, mv."""
    q = shlex.quote
    path = change.path
    directory = path.rsplit("/", 1)[0] or "/"
    tmp = f"{path}.metalctl-new"
    backup = backup_path(path, when)
    data = base64.b64encode(change.new.encode()).decode()
    dir_mode = "0750" if directory.endswith("/private") else "0755"
    return [
        f"echo {q('### step file ' + path)}",
        f"[ -d {q(directory)} ] || install -d -m {dir_mode} {q(directory)}",
        f"if [ -e {q(path)} ]; then install -d -m 0700 {q(backup.rsplit('/', 1)[0])}; "
        f"cp -p {q(path)} {q(backup)}; fi",
        f"base64 -d > {q(tmp)} <<'METALCTL_EOF'",
        *[data[i:i + 76] for i in range(0, len(data), 76)],
        "METALCTL_EOF",
        f"chown {q(change.owner + ':' + change.group)} {q(tmp)}",
        f"chmod {q(change.mode)} {q(tmp)}",
        f"mv -f {q(tmp)} {q(path)}",
        f"echo {q('### done file ' + path)}",
    ]


def script(plan: RulePlan, init: str, daemon: str = "libvirtd", pace_s: float = 0.0,
           when: str | None = None, skip: Collection[str] = ()) -> str:
    """Return the shell script that applies ``plan`` on a host using ``init``.

    Each file is written through a temporary file with a backup under
    ``/var/backups/metalctl``, then commands and the daemon handlers run; each step echoes
    a marker so the steps done can be read back. ``pace_s`` seconds are slept after
    each file. Files in ``skip`` are left to :func:`guarded_script`.
    """
    q = shlex.quote
    when = when or stamp()
    lines = ["set -eu", "umask 077"]
    for change in plan.files.values():
        if change.path in skip:
            continue
        lines += _write(change, when)
        if pace_s:
            lines.append(f"sleep {pace_s}")
    for rid, command in plan.commands:
        lines += [f"echo {q('### step command ' + rid)}", command,
                  f"echo {q('### done command ' + rid)}"]
    for handler in plan.handlers:
        cmd = HANDLERS[(handler, "systemd" if init == "systemd" else "sysv")].format(
            daemon=daemon)
        lines += [f"echo {q('### step handler ' + handler)}", cmd,
                  f"echo {q('### done handler ' + handler)}"]
    lines.append('echo "### end"')
    return "\n".join(lines) + "\n"


# --- sshd: the guarded step ------------------------------------------------------------------

#: reload sshd without dropping sessions: the service under systemd (none active: socket
#: activation reads the configuration per connection), SIGHUP to its pid file otherwise
#: (sshd re-executes itself; the sessions it forked live on)
SSHD_RELOAD = ("if [ -d /run/systemd/system ]; then for u in ssh.service sshd.service; do "
               "if systemctl is-active --quiet $u; then systemctl reload $u; fi; done; else "
               "kill -HUP \"$(cat \"$(sshd -T 2>/dev/null | "
               "awk '$1==\"pidfile\"{print $2}')\")\"; fi")
REJECTED, SAYS = "### sshd-rejected", "### sshd-says "


def _restore(changes: Collection[FileChange], when: str) -> list[str]:
    """Put every file back as it was before ``when`` (a new file is removed)."""
    q = shlex.quote
    out = []
    for c in changes:
        if c.old is None:
            out.append(f"rm -f {q(c.path)}")
        else:
            tmp = f"{c.path}.metalctl-restore"
            out.append(f"cp -p {q(backup_path(c.path, when))} {q(tmp)} && mv -f {q(tmp)} "
                       f"{q(c.path)}")
    return out


def guarded_script(changes: Collection[FileChange], when: str) -> str:
    """Write the sshd files, validate with ``sshd -t`` (rejected: restore them and print
    ``REJECTED`` lines with sshd's message, exit 0), then reload sshd."""
    lines = ["set -eu", "umask 077"]
    for change in changes:
        lines += _write(change, when)
    lines += [
        "echo '### step validate sshd'",
        "if ! out=$(sshd -t 2>&1); then",
        *("  " + x for x in _restore(changes, when)),
        f"  echo '{REJECTED}'; printf '%s\\n' \"$out\" | head -n 20 | sed 's/^/{SAYS}/'",
        "  echo '### end'; exit 0",
        "fi",
        "echo '### done validate sshd'",
        "echo '### step reload sshd'",
        SSHD_RELOAD,
        "echo '### done reload sshd'",
        'echo "### end"',
    ]
    return "\n".join(lines) + "\n"


def restore_script(changes: Collection[FileChange], when: str) -> str:
    """Put the sshd files back from the backups of ``when``, validate, reload."""
    return "\n".join(["set -eu", "umask 077", "echo '### step restore sshd'",
                       *_restore(changes, when), "sshd -t", SSHD_RELOAD,
                       "echo '### done restore sshd'", 'echo "### end"']) + "\n"


def rejected(output: str) -> str | None:
    """sshd's message when ``sshd -t`` refused the new configuration (None: accepted)."""
    if REJECTED not in output.splitlines():
        return None
    said = [ln[len(SAYS):].strip() for ln in output.splitlines() if ln.startswith(SAYS)]
    return "; ".join(x for x in said if x) or "sshd -t failed without a message"


def completed(output: str) -> list[str]:
    """The steps the host reported done (``file /etc/...``, ``command ID``, ``handler x``)."""
    return [line[len("### done "):] for line in output.splitlines()
            if line.startswith("### done ")]
