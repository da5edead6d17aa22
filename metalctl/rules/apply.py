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

from metalctl.rules.plan import RulePlan

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


def script(plan: RulePlan, init: str, daemon: str = "libvirtd", pace_s: float = 0.0) -> str:
    """Return the shell script that applies ``plan`` on a host using ``init``.

    Each file is written through a temporary file with a backup under
    ``/var/backups/metalctl``, then commands and the daemon handlers run; each step echoes
    a marker so the steps done can be read back. ``pace_s`` seconds are slept after
    each file.
    """
    q = shlex.quote
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    lines = ["set -eu", "umask 077"]
    for change in plan.files.values():
        path = change.path
        directory = path.rsplit("/", 1)[0] or "/"
        tmp = f"{path}.metalctl-new"
        backup = f"/var/backups/metalctl{path}.{stamp}"
        data = base64.b64encode(change.new.encode()).decode()
        dir_mode = "0750" if directory.endswith("/private") else "0755"
        lines += [
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


def completed(output: str) -> list[str]:
    """The steps the host reported done (``file /etc/...``, ``command ID``, ``handler x``)."""
    return [line[len("### done "):] for line in output.splitlines()
            if line.startswith("### done ")]
