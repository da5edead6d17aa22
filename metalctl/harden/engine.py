"""Evaluate rules against gathered facts and plan the exact changes.

Pure: facts + rules + context in, a :class:`Plan` out (per-rule outcomes, the new
content of every file that changes, fix commands, handlers to run). ``--check`` prints
the plan as diffs; apply executes it; a second evaluation after apply must plan
nothing (that is how idempotency is verified, not assumed).
"""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from metalctl.harden import edit
from metalctl.harden.certcheck import check_certificate
from metalctl.harden.gather import GatherSpec, HostFacts
from metalctl.harden.rules import Rule

# outcome statuses
COMPLIANT = "compliant"
CHANGE = "change"  # harden will (or did) change something
DEFERRED = "deferred"  # needs a reboot into the right kernel state first
NOTAPPLICABLE = "notapplicable"
NOTCHECKED = "notchecked"  # the site gave nothing to check against
REPORT = "report"
MANUAL = "manual"  # not compliant; no automatic fix (audit: fail, harden: reported)
ERROR = "error"

LIBVIRT_CONFS = ("/etc/libvirt/libvirtd.conf", "/etc/libvirt/virtproxyd.conf")
DNF_GLOB = "/etc/yum.repos.d/*.repo"
APT_FILES = ("/etc/apt/sources.list",)
APT_GLOB = "/etc/apt/sources.list.d/*.list"


@dataclass
class Context:
    """What a host's rules are rendered with: site policy, inventory and PKI material."""

    host: str
    mgmt_address: str
    allowed_dns: list[str]
    site: dict[str, Any]
    pki: dict[str, str] = field(default_factory=dict)  # source name -> PEM text

    def variables(self, facts: HostFacts) -> dict[str, Any]:
        lsm = self.site.get("lsm", "auto")
        if lsm == "auto":
            lsm = "selinux" if facts.family == "rhel" else "apparmor"
        modular = facts.init == "systemd" and "virtproxyd" in facts.binaries
        apply_updates = str(self.site.get("updates", {}).get("apply", "no"))
        return {
            "lsm": lsm,
            "selinux_policy": "targeted" if facts.family == "rhel" else "default",
            "mgmt_address": self.mgmt_address,
            "allowed_dns": self.allowed_dns,
            "tls_priority": self.site.get("libvirt", {}).get("tls_priority"),
            "libvirt_daemon": "virtproxyd" if modular else "libvirtd",
            "libvirt_daemon_conf": LIBVIRT_CONFS[1] if modular else LIBVIRT_CONFS[0],
            "qemu_group": "qemu" if facts.family == "rhel" else "libvirt-qemu",
            "dnf_apply_updates": apply_updates,
            "apt_unattended": "1" if apply_updates == "yes" else "0",
        }


_VAR = re.compile(r"\{([a-z_]+)\}")


def render(value: Any, variables: dict[str, Any]) -> Any:
    """Replace ``{name}`` with known variables only (``${distro_codename}`` stays)."""
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole and whole.group(1) in variables:
            return variables[whole.group(1)]  # keeps lists and ints as they are
        return _VAR.sub(lambda m: str(variables[m.group(1)]) if m.group(1) in variables
                        else m.group(0), value)
    if isinstance(value, dict):
        return {k: render(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    return value


# --- the plan -------------------------------------------------------------------------------


@dataclass
class FileChange:
    path: str
    old: str | None  # None: new file (or content not gathered: secrets)
    new: str
    mode: str
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # never shown in diffs or logs

    def diff(self) -> str:
        if self.secret:
            return (f"--- {self.path}\n+++ {self.path}\n"
                    f"(secret content replaced, mode {self.mode})\n")
        return "".join(difflib.unified_diff(
            (self.old or "").splitlines(keepends=True), self.new.splitlines(keepends=True),
            fromfile=f"{self.path}" if self.old is not None else "/dev/null",
            tofile=f"{self.path}"))


@dataclass
class Outcome:
    rule: str
    severity: str
    title: str
    status: str
    detail: str = ""
    expected: str | None = None
    actual: str | None = None


@dataclass
class Plan:
    host: str
    outcomes: list[Outcome] = field(default_factory=list)
    files: dict[str, FileChange] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (rule id, command)
    handlers: list[str] = field(default_factory=list)
    reboot_required: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return len(self.files) + len(self.commands)

    def diff(self) -> str:
        parts = [c.diff() for c in self.files.values()]
        parts += [f"# {rid}: run: {cmd}\n" for rid, cmd in self.commands]
        parts += [f"# handler: restart {h}\n" for h in self.handlers]
        return "".join(parts)


class _Workspace:
    """Current file texts as rules edit them one after another."""

    def __init__(self, facts: HostFacts) -> None:
        self.facts = facts
        self.texts: dict[str, str] = {}
        self.meta: dict[str, tuple[str, str, str, bool]] = {}

    def text(self, path: str) -> str:
        if path not in self.texts:
            self.texts[path] = self.facts.text(path)
        return self.texts[path]

    def put(self, path: str, text: str, mode: str | None = None, owner: str | None = None,
            group: str | None = None, secret: bool = False) -> None:
        self.texts[path] = text
        f = self.facts.file(path)
        self.meta[path] = (mode or f.mode or "644", owner or f.owner or "root",
                           group or f.group or "root", secret)

    def snapshot(self, path: str) -> tuple[str | None, tuple[str, str, str, bool] | None]:
        return self.texts.get(path), self.meta.get(path)

    def restore(self, path: str,
                saved: tuple[str | None, tuple[str, str, str, bool] | None]) -> None:
        """Undo a put that turned out to change nothing (what was there stays)."""
        text, meta = saved
        for table, value in ((self.texts, text), (self.meta, meta)):
            if value is None:
                table.pop(path, None)  # type: ignore[attr-defined]
            else:
                table[path] = value  # type: ignore[index]

    def change(self, path: str) -> FileChange | None:
        """What writing ``path`` would change on the host (content or metadata), if any."""
        text = self.texts[path]
        f = self.facts.file(path)
        mode, owner, group, secret = self.meta.get(
            path, (f.mode or "644", f.owner or "root", f.group or "root", False))
        same_content = (f.exists and (
            (f.content is not None and f.content == text)
            or (f.content is None and f.sha256 == _sha(text))))
        same_meta = f.exists and (f.mode or "").lstrip("0") == mode.lstrip("0") and \
            f.owner == owner and f.group == group
        if same_content and same_meta:
            return None
        return FileChange(path, f.content if f.exists else None, text, mode, owner, group,
                          secret)

    def changes(self) -> dict[str, FileChange]:
        return {p: c for p in self.texts if (c := self.change(p)) is not None}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- gather spec from rules --------------------------------------------------------------------


def gather_spec(rules: list[Rule]) -> GatherSpec:
    spec = GatherSpec()
    spec.content.update(LIBVIRT_CONFS)
    spec.content.update(APT_FILES)
    spec.globs.update({DNF_GLOB, APT_GLOB})
    spec.exists.add("/.autorelabel")
    for r in rules:
        c = r.check
        if r.when.get("path_exists"):
            spec.exists.add(r.when["path_exists"])
        if "file" in c and "{" not in c["file"]:
            spec.content.add(c["file"])
        if c["kind"] == "file":
            for path in _expand(c["path"]):
                (spec.hashed if str(c.get("source", "")).startswith("pki:")
                 else spec.content).add(path)
        if c["kind"] == "files":
            for f in c["files"]:
                (spec.hashed if str(f.get("source", "")).startswith("pki:")
                 else spec.content).add(f["path"])
        if c["kind"] == "units":
            for u in [*c.get("enable", []), *c.get("disable", [])]:
                spec.units.update(_expand(u))
        if c["kind"] in ("command", "probe_lines", "present"):
            probe = c["probe"]
            if r.when.get("path_exists"):  # an inapplicable rule costs the host nothing
                probe = f"[ -e {shlex.quote(r.when['path_exists'])} ] && {{ {probe}; }}"
            spec.probes[r.id] = probe
        if c["kind"] == "sshd":
            spec.probes["sshd-T"] = "sshd -T -C user=root,host=localhost,addr=127.0.0.1 2>&1"
        if c["kind"] == "sysctl":
            spec.probes["sysctl"] = "sysctl -a 2>/dev/null"
        if c["kind"] == "cmdline":
            spec.probes["cmdline"] = "cat /proc/cmdline"
        if c["kind"] == "process_labels":
            spec.probes["qemu-labels"] = ("ps -eo label=,comm= 2>/dev/null | "
                                          "grep -E 'qemu' || true")
        if c["kind"] == "certificate":
            spec.content.add(c["path"])
            spec.content.add(c.get("ca", "/etc/pki/CA/cacert.pem"))
        if c["kind"] == "report":
            spec.probes[r.id + "-dnf"] = f"command -v dnf >/dev/null && {{ {c['probe_dnf']}; }}"
            spec.probes[r.id + "-apt"] = \
                f"command -v apt-get >/dev/null && {{ {c['probe_apt']}; }}"
    return spec


def _expand(path: str) -> list[str]:
    """Paths that depend on the libvirt daemon flavour: gather both, use the one that fits."""
    if "{libvirt_daemon}" in path:
        return [path.replace("{libvirt_daemon}", d) for d in ("libvirtd", "virtproxyd")]
    return [path]


# --- evaluation ------------------------------------------------------------------------------


def evaluate(rules: list[Rule], facts: HostFacts, ctx: Context) -> Plan:
    plan = Plan(host=ctx.host)
    variables = ctx.variables(facts)
    ws = _Workspace(facts)
    for rule in rules:
        why = _not_applicable(rule, facts, variables)
        if why:
            plan.outcomes.append(Outcome(rule.id, rule.severity, rule.title, NOTAPPLICABLE, why))
            continue
        check = render(rule.check, variables)
        try:
            outcome = KINDS[rule.kind](rule, check, facts, ws, plan, ctx)
        except KeyError as exc:
            outcome = Outcome(rule.id, rule.severity, rule.title, ERROR,
                              f"missing value {exc} (site policy or inventory)")
        plan.outcomes.append(outcome)
    plan.files = ws.changes()
    changed_rules = {o.rule for o in plan.outcomes if o.status == CHANGE}
    for rule in rules:
        if rule.id in changed_rules:
            for h in rule.notify:
                if h == "libvirtd" and h not in plan.handlers:
                    plan.handlers.append(h)
    return plan


def _not_applicable(rule: Rule, facts: HostFacts, variables: dict[str, Any]) -> str | None:
    if facts.family not in rule.platforms:
        return f"platform {facts.family} not in {', '.join(rule.platforms)}"
    w = rule.when
    if w.get("lsm") and w["lsm"] != variables["lsm"]:
        return f"site LSM is {variables['lsm']}"
    if w.get("init") and w["init"] != facts.init:
        return f"init is {facts.init}"
    if w.get("pkg") and w["pkg"] not in facts.pkg:
        return f"no {w['pkg']} on the host"
    if w.get("path_exists") and not facts.exists.get(w["path_exists"]):
        return f"{w['path_exists']} absent"
    return None


def _o(rule: Rule, status: str, detail: str = "", expected: Any = None,
       actual: Any = None) -> Outcome:
    return Outcome(rule.id, rule.severity, rule.title, status, detail,
                   None if expected is None else str(expected),
                   None if actual is None else str(actual))


def _norm(raw: str | None) -> str | None:
    return None if raw is None else re.sub(r"\s+", "", raw)


def _lsm_active(lsm: str, facts: HostFacts) -> bool:
    return facts.selinux_enabled if lsm == "selinux" else facts.apparmor_enabled if \
        lsm == "apparmor" else False


def k_libvirt_kv(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
                 ctx: Context) -> Outcome:
    path = c["file"]
    if path.startswith("/etc/libvirt/") and not facts.file(path).exists \
            and path not in ws.texts:
        return _o(rule, ERROR, f"{path} missing (libvirt not installed?)")
    lsm = str(c.get("lsm", c["value"]))
    if c.get("requires_active_lsm") and not _lsm_active(lsm, facts):
        plan.reboot_required.append(f"{rule.id}: {lsm} not active in the running kernel")
        return _o(rule, DEFERRED, f"{lsm} is not active in the running kernel and libvirtd "
                                  f"refuses to start with {c['key']} set then; it is set "
                                  "after a reboot into it",
                  c["value"], edit.get_kv(ws.text(path), c["key"]))
    return _set_libvirt(rule, path, {c["key"]: c["value"]}, ws)


def k_libvirt_kv_set(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace,
                     plan: Plan, ctx: Context) -> Outcome:
    if not facts.file(c["file"]).exists:
        return _o(rule, ERROR, f"{c['file']} missing (libvirt not installed?)")
    return _set_libvirt(rule, c["file"], c["values"], ws)


def _set_libvirt(rule: Rule, path: str, values: dict[str, Any], ws: _Workspace) -> Outcome:
    text = ws.text(path)
    drift = []
    for key, value in values.items():
        want = edit.libvirt_value(value)
        have = edit.get_kv(text, key)
        if _norm(have) != _norm(want):
            drift.append((key, want, have))
            text = edit.set_kv(text, key, want)
    if not drift:
        return _o(rule, COMPLIANT, "", *(_pair(values, ws.text(path))))
    ws.put(path, text)
    return _o(rule, CHANGE, "", "; ".join(f"{k} = {w}" for k, w, _ in drift),
              "; ".join(f"{k} = {h if h is not None else '(unset)'}" for k, _, h in drift))


def _pair(values: dict[str, Any], text: str) -> tuple[str, str]:
    return ("; ".join(f"{k} = {edit.libvirt_value(v)}" for k, v in values.items()),
            "; ".join(f"{k} = {edit.get_kv(text, k)}" for k in values))


def k_shell_kv(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
               ctx: Context) -> Outcome:
    path = c["file"]
    if not facts.file(path).exists and c.get("must_exist", path.startswith("/etc/selinux")):
        return _o(rule, ERROR, f"{path} missing")
    text = ws.text(path)
    have = edit.get_shell(text, c["key"])
    if have == str(c["value"]):
        return _o(rule, COMPLIANT, "", c["value"], have)
    ws.put(path, edit.set_shell(text, c["key"], str(c["value"]), quote=c.get("quote", False)))
    if rule.id == "SEL-001" and not facts.selinux_enabled:
        # SELinux off in the running kernel: files created meanwhile carry no labels
        if not facts.exists.get("/.autorelabel"):
            plan.commands.append((rule.id, "touch /.autorelabel"))
        plan.reboot_required.append(f"{rule.id}: SELinux was disabled; relabel scheduled")
    return _o(rule, CHANGE, "", f"{c['key']}={c['value']}", f"{c['key']}={have}")


_TRUE, _FALSE = {"1", "true", "yes"}, {"0", "false", "no"}


def _ini_same(have: str | None, want: str) -> bool:
    """dnf reads 1/True/yes alike (ComplianceAsCode PR #14986): compare booleans as such."""
    if have is None:
        return False
    h, w = have.strip().lower(), want.strip().lower()
    if w in _TRUE:
        return h in _TRUE
    if w in _FALSE:
        return h in _FALSE
    return have.strip() == want


def k_ini_set(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    path = c["file"]
    text = ws.text(path)
    drift = []
    for key, value in c["values"].items():
        have = edit.get_ini(text, c["section"], key)
        if not _ini_same(have, str(value)):
            drift.append(f"[{c['section']}] {key}: {have} -> {value}")
            text = edit.set_ini(text, c["section"], key, str(value))
    if not drift:
        return _o(rule, COMPLIANT)
    ws.put(path, text)
    return _o(rule, CHANGE, "", actual="; ".join(drift))


def k_ini_all(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    drift = []
    for path in sorted(p for p in facts.files if fnmatch.fnmatch(p, c["glob"])):
        text = ws.text(path)
        new = text
        for section in edit.ini_sections(text):
            if c.get("only_enabled") and edit.get_ini(text, section, "enabled") == "0":
                continue
            for key, value in c["values"].items():
                have = edit.get_ini(new, section, key)
                if not _ini_same(have, str(value)):
                    drift.append(f"{path} [{section}] {key}: {have} -> {value}")
                    new = edit.set_ini(new, section, key, str(value))
        if new != text:
            ws.put(path, new)
    if not drift:
        return _o(rule, COMPLIANT)
    return _o(rule, CHANGE, "", actual="; ".join(drift))


def k_files(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
            ctx: Context) -> Outcome:
    specs = c["files"] if c["kind"] == "files" else [c]
    changed = []
    for spec in specs:
        source = spec.get("source")
        if source:
            name = source.split(":", 1)[1]
            if name not in ctx.pki:
                return _o(rule, ERROR, f"no PKI material {name!r} for {ctx.host}: run "
                                       "`metalctl pki issue` for this host")
            content = ctx.pki[name]
        else:
            content = spec["content"]
        group = spec.get("group", "root")
        if group not in facts.groups:
            return _o(rule, ERROR, f"group {group} does not exist on the host")
        secret = source is not None and source.endswith("_key")
        saved = ws.snapshot(spec["path"])
        ws.put(spec["path"], content, mode=spec.get("mode", "0644"), group=group, secret=secret)
        if ws.change(spec["path"]) is not None:
            changed.append(spec["path"])
        else:
            ws.restore(spec["path"], saved)
    if not changed:
        return _o(rule, COMPLIANT)
    return _o(rule, CHANGE, "", actual="; ".join(f"{p} differs" for p in changed))


def k_units(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
            ctx: Context) -> Outcome:
    cmds = []
    for unit in c.get("enable", []):
        if facts.units.get(unit, "absent") != "enabled":
            cmds.append(f"systemctl enable {unit}")  # started by the libvirtd handler
    for unit in c.get("disable", []):
        if facts.units.get(unit, "absent") not in ("disabled", "masked", "absent"):
            cmds.append(f"systemctl disable --now {unit}")
    if not cmds:
        return _o(rule, COMPLIANT)
    plan.commands += [(rule.id, x) for x in cmds]
    return _o(rule, CHANGE, "", actual="; ".join(cmds))


def k_command(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    out = facts.probes.get(rule.id, "")
    if re.search(c["expect"], out):
        return _o(rule, COMPLIANT, "", c["expect"], out[:200])
    if c.get("fix") in (None, "false"):
        return _o(rule, MANUAL, rule.remediation or "no automatic fix", c["expect"], out[:200])
    plan.commands.append((rule.id, c["fix"]))
    return _o(rule, CHANGE, "", c["expect"], out[:200])


def k_selinux_runtime(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace,
                      plan: Plan, ctx: Context) -> Outcome:
    if not facts.selinux_enabled:
        plan.reboot_required.append(f"{rule.id}: SELinux disabled in the running kernel")
        return _o(rule, DEFERRED, "SELinux is disabled in the running kernel; enforcing after "
                                  "the reboot (relabel scheduled)", "Enforcing",
                  facts.getenforce or "Disabled")
    if facts.getenforce == "Enforcing":
        return _o(rule, COMPLIANT, "", "Enforcing", facts.getenforce)
    plan.commands.append((rule.id, "setenforce 1"))
    return _o(rule, CHANGE, "", "Enforcing", facts.getenforce)


def k_service(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    name = c["name"]
    if name in facts.processes:
        return _o(rule, COMPLIANT, "", "running", "running")
    if "libvirtd" not in plan.handlers:
        plan.handlers.append("libvirtd")
    return _o(rule, CHANGE, "", "running", "not running")


def k_listening(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
                ctx: Context) -> Outcome:
    port = str(c["port"])
    socks = sorted(s for s in facts.listening if s.rsplit(":", 1)[-1] == port)
    want = bool(c.get("listening", True))
    where = c.get("address")
    ok = (bool(socks) == want) and (not want or not where
                                    or any(s.startswith(f"{where}:") for s in socks))
    expected = (f"{where or '*'}:{port} listening" if want else f"nothing on :{port}")
    if ok:
        return _o(rule, COMPLIANT, "", expected, ", ".join(socks) or "none")
    # fixed by (re)starting the daemon with its new configuration; checked again after
    if "libvirtd" not in plan.handlers:
        plan.handlers.append("libvirtd")
    return _o(rule, CHANGE, "", expected, ", ".join(socks) or "none")


def k_report(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
             ctx: Context) -> Outcome:
    parts = []
    for pm in ("dnf", "apt"):
        out = facts.probes.get(f"{rule.id}-{pm}", "").strip()
        if out:
            last = out.splitlines()[-1]
            parts.append(f"{pm}: {last + ' pending' if last.isdigit() else last[:100]}")
    return _o(rule, REPORT, "; ".join(parts) or "no package manager answered")


def k_dnf_allowlist(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace,
                    plan: Plan, ctx: Context) -> Outcome:
    declared = {r["id"]: r for r in ctx.site.get("repositories", {}).get("dnf") or []}
    if not declared:
        return _o(rule, NOTCHECKED, "the site declares no dnf repositories "
                                    "(hardening/site.yaml repositories.dnf)")
    actions = []
    for path in sorted(p for p in facts.files if fnmatch.fnmatch(p, DNF_GLOB)):
        text = ws.text(path)
        new = text
        for section in edit.ini_sections(text):
            if section not in declared:
                if edit.get_ini(new, section, "enabled") != "0":
                    new = edit.set_ini(new, section, "enabled", "0")
                    actions.append(f"disabled undeclared repo {section} ({path})")
            elif declared[section].get("gpgkey") and \
                    edit.get_ini(new, section, "gpgkey") != declared[section]["gpgkey"]:
                new = edit.set_ini(new, section, "gpgkey", declared[section]["gpgkey"])
                actions.append(f"pinned gpgkey of {section}")
        if new != text:
            ws.put(path, new)
    if not actions:
        return _o(rule, COMPLIANT)
    return _o(rule, CHANGE, "", actual="; ".join(actions))


_APT_LINE = re.compile(r"^\s*(deb|deb-src)\s+(\[[^\]]*\]\s+)?(\S+)\s+(.*)$")


def k_apt_allowlist(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace,
                    plan: Plan, ctx: Context) -> Outcome:
    declared = ctx.site.get("repositories", {}).get("apt") or []
    paths = sorted(p for p in facts.files
                   if p in APT_FILES or fnmatch.fnmatch(p, APT_GLOB))
    actions, problems = [], []
    for path in paths:
        lines = ws.text(path).splitlines()
        out = []
        for line in lines:
            m = _APT_LINE.match(line)
            if not m:
                out.append(line)
                continue
            kind, opts, uri, rest = m.group(1), (m.group(2) or "").strip(), m.group(3), m.group(4)
            match = next((d for d in declared if uri.rstrip("/").startswith(
                d["uri"].rstrip("/"))), None)
            if declared and match is None:
                out.append(f"# metalctl: disabled undeclared source: {line.strip()}")
                actions.append(f"disabled {uri} ({path})")
                continue
            if "trusted=yes" in opts:
                if match is None:
                    problems.append(f"{uri} is trusted=yes; declare it with its signed-by "
                                    "keyring in the site policy")
                    out.append(line)
                    continue
                out.append(f"{kind} [signed-by={match['signed_by']}] {uri} {rest}")
                actions.append(f"{uri}: trusted=yes replaced by signed-by ({path})")
                continue
            if match is not None and "signed-by=" not in opts:
                out.append(f"{kind} [signed-by={match['signed_by']}] {uri} {rest}")
                actions.append(f"{uri}: pinned signed-by ({path})")
                continue
            out.append(line)
        new = "\n".join(out) + "\n"
        if new != ws.text(path):
            ws.put(path, new)
    if problems:
        return _o(rule, ERROR, "; ".join(problems))
    if not declared:
        return _o(rule, NOTCHECKED if not actions else CHANGE,
                  "the site declares no apt sources (hardening/site.yaml repositories.apt)")
    if not actions:
        return _o(rule, COMPLIANT)
    return _o(rule, CHANGE, "", actual="; ".join(actions))


# --- check-only kinds (effective state; remediation is the rule's text) -----------------


def _manual(rule: Rule, expected: Any, actual: Any) -> Outcome:
    return _o(rule, MANUAL, rule.remediation or "", expected, actual)


def _sshd_effective(facts: HostFacts) -> dict[str, str] | None:
    out = facts.probes.get("sshd-T")
    if not out or "permitrootlogin" not in out:
        return None
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(" ")
        values.setdefault(key.lower(), value.strip())
    return values


def k_sshd(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
           ctx: Context) -> Outcome:
    """Judged on ``sshd -T`` (drop-ins and Match blocks resolved), never on sshd_config."""
    values = _sshd_effective(facts)
    if values is None:
        return _o(rule, ERROR, "sshd -T gave no configuration: "
                  + facts.probes.get("sshd-T", "")[:120])
    have = values.get(c["key"].lower())
    if "allowed" in c:
        ok = have in [str(a) for a in c["allowed"]]
        expected = " or ".join(map(str, c["allowed"]))
    elif "max" in c:
        ok = have is not None and have.isdigit() and int(have) <= int(c["max"])
        expected = f"<= {c['max']}"
    elif "min" in c:
        ok = have is not None and have.isdigit() and int(have) >= int(c["min"])
        expected = f">= {c['min']}"
    else:  # forbidden substrings in a list value (ciphers, macs, kex)
        bad = [x for x in (have or "").split(",") if re.search(c["forbid"], x)]
        ok, expected = not bad, f"no {c['forbid']}"
        have = ",".join(bad) or have
    if ok:
        return _o(rule, COMPLIANT, "sshd -T", expected, have)
    return _manual(rule, expected, f"{c['key']} {have}")


def k_sysctl(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
             ctx: Context) -> Outcome:
    values = dict(line.split(" = ", 1) for line in facts.probes.get("sysctl", "").splitlines()
                  if " = " in line)
    have = values.get(c["key"])
    if have is None:
        return _o(rule, NOTAPPLICABLE, f"{c['key']} not present in this kernel")
    want = [str(v) for v in (c["allowed"] if "allowed" in c else [c["value"]])]
    if have.strip() in want:
        return _o(rule, COMPLIANT, "sysctl", " or ".join(want), have)
    return _manual(rule, " or ".join(want), have)


def k_cmdline(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    args = facts.probes.get("cmdline", "").split()
    if "absent" in c:
        bad = [a for a in args if a in c["absent"]]
        if not bad:
            return _o(rule, COMPLIANT, "/proc/cmdline", f"none of {c['absent']}", "absent")
        return _manual(rule, f"none of {c['absent']}", " ".join(bad))
    found = [a for a in args if any(a == x or a.startswith(x) for x in c["any_of"])]
    if found:
        return _o(rule, COMPLIANT, "/proc/cmdline", f"one of {c['any_of']}", " ".join(found))
    return _manual(rule, f"one of {c['any_of']}", "absent")


def k_probe_lines(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
                  ctx: Context) -> Outcome:
    """A read-only probe whose output lines are findings (empty output = compliant)."""
    out = facts.probes.get(rule.id, "").strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if not lines:
        return _o(rule, COMPLIANT, c["probe"][:60], "none", "none")
    return _manual(rule, "none", "; ".join(lines[:10]) + (f" (+{len(lines) - 10})"
                                                           if len(lines) > 10 else ""))


def k_present(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
              ctx: Context) -> Outcome:
    """A read-only probe must print something matching ``expect``."""
    out = facts.probes.get(rule.id, "")
    m = re.search(c["expect"], out, re.MULTILINE)
    if m:
        line = next((ln for ln in out.splitlines() if m.group(0) in ln), m.group(0))
        return _o(rule, COMPLIANT, "", c["expect"], line.strip()[:200])
    return _manual(rule, c["expect"], f"no line matching {c['expect']!r}" if out.strip()
                   else "nothing")


def k_process_labels(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace,
                     plan: Plan, ctx: Context) -> Outcome:
    """Running QEMU processes confined by sVirt, each with its own MCS category pair."""
    rows = [ln.split(None, 1) for ln in facts.probes.get("qemu-labels", "").splitlines()
            if ln.strip()]
    if not rows:
        return _o(rule, NOTAPPLICABLE, "no QEMU process running")
    labels = [r[0] for r in rows]
    if not (facts.selinux_enabled or facts.apparmor_enabled):
        return _manual(rule, "svirt_t / libvirt-<uuid> profile per guest",
                       f"{len(rows)} QEMU process(es) unconfined: no LSM active")
    unconfined = [x for x in labels if "svirt" not in x and "libvirt-" not in x]
    cats = [x.rsplit(":", 1)[-1] for x in labels if "svirt" in x]
    shared = len(cats) != len(set(cats))
    if unconfined or shared:
        return _manual(rule, "confined, distinct MCS pairs",
                       f"unconfined: {unconfined}" if unconfined else "shared MCS categories")
    return _o(rule, COMPLIANT, "ps -eZ", "confined, distinct MCS pairs", ", ".join(labels))


def k_certificate(rule: Rule, c: dict[str, Any], facts: HostFacts, ws: _Workspace, plan: Plan,
                  ctx: Context) -> Outcome:
    """Validity, expiry window and chain of a (public) certificate file on the host."""
    f = facts.file(c["path"])
    if not f.exists or f.content is None:
        return _manual(rule, "present", "absent")
    ca = facts.file(c.get("ca", "/etc/pki/CA/cacert.pem"))
    problem, summary = check_certificate(f.content, ca.content if ca.exists else None,
                                         int(c.get("days", 30)))
    if problem:
        return _manual(rule, f"valid > {c.get('days', 30)} days, chained to the site CA",
                       f"{c['path']}: {problem}")
    return _o(rule, COMPLIANT, c["path"], "valid, chained", summary)


KINDS = {
    "libvirt_kv": k_libvirt_kv, "libvirt_kv_set": k_libvirt_kv_set, "shell_kv": k_shell_kv,
    "ini_set": k_ini_set, "ini_all": k_ini_all, "file": k_files, "files": k_files,
    "units": k_units, "command": k_command, "selinux_runtime": k_selinux_runtime,
    "service": k_service, "listening": k_listening, "report": k_report,
    "dnf_allowlist": k_dnf_allowlist, "apt_allowlist": k_apt_allowlist,
    "sshd": k_sshd, "sysctl": k_sysctl, "cmdline": k_cmdline, "probe_lines": k_probe_lines,
    "present": k_present, "process_labels": k_process_labels, "certificate": k_certificate,
}
