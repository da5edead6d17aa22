"""What the rules engine works with and produces: the rendering context, per-rule
outcomes, the plan of file changes, commands and handlers, and the workspace in which
rules edit files one after another. Pure data; no I/O."""

from __future__ import annotations

import difflib
import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from metalctl.model.compliance import CheckStatus
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import HostFacts

COMPLIANT, CHANGE, DEFERRED = CheckStatus.COMPLIANT, CheckStatus.CHANGE, CheckStatus.DEFERRED
NOTAPPLICABLE, NOTCHECKED = CheckStatus.NOTAPPLICABLE, CheckStatus.NOTCHECKED
REPORT, MANUAL, ERROR = CheckStatus.REPORT, CheckStatus.MANUAL, CheckStatus.ERROR

LIBVIRT_CONFS = ("/etc/libvirt/libvirtd.conf", "/etc/libvirt/virtproxyd.conf")
DNF_GLOB = "/etc/yum.repos.d/*.repo"
APT_FILES = ("/etc/apt/sources.list",)
APT_GLOB = "/etc/apt/sources.list.d/*.list"
APT_SOURCES_GLOB = "/etc/apt/sources.list.d/*.sources"  # deb822, Debian 12's default


@dataclass
class Context:
    """What a host's rules are rendered with: site policy, inventory and PKI material."""

    host: str
    mgmt_address: str
    allowed_dns: list[str]
    site: dict[str, Any]
    pki: dict[str, str] = field(default_factory=dict)  # source name -> PEM text

    def variables(self, facts: HostFacts) -> dict[str, Any]:
        """The ``{name}`` variables rule bodies are rendered with, for this host."""
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
            # SSH-001: key-only root login (metalctl's own access) unless the site wants
            # the STIG/CIS control as written, PermitRootLogin no (docs/audit.md)
            "permit_root_login": ["no"] if str(
                self.site.get("ssh", {}).get("root_login", "key-only")) in ("no", "False")
            else ["prohibit-password", "without-password", "no", "forced-commands-only"],
            # SSH-010: CIS accepts INFO or VERBOSE, the STIG wants VERBOSE
            "ssh_loglevels": ["VERBOSE"] if str(
                self.site.get("ssh", {}).get("loglevel", "info-or-verbose")) == "verbose"
            else ["VERBOSE", "INFO"],
            "apt_unattended": "1" if apply_updates == "yes" else "0",
        }

    def shared_kernel(self, facts: HostFacts) -> list[str]:
        """Why this host does not own the kernel it runs (empty: it does): detected on the
        host, or named by the site (``sysctl.shared_kernel_hosts``, host-name globs)."""
        globs = self.site.get("sysctl", {}).get("shared_kernel_hosts") or []
        named = [f"site: sysctl.shared_kernel_hosts {g}" for g in globs
                 if fnmatch.fnmatch(self.host, g)]
        return [*facts.kernel_shared, *named]


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
    """The new content and metadata of one file (``old`` None: new or secret)."""

    path: str
    old: str | None  # None: new file (or content not gathered: secrets)
    new: str
    mode: str
    owner: str = "root"
    group: str = "root"
    secret: bool = False  # never shown in diffs or logs

    def diff(self) -> str:
        """A unified diff; secret files show only that they change."""
        if self.secret:
            return (f"--- {self.path}\n+++ {self.path}\n"
                    f"(secret content replaced, mode {self.mode})\n")
        return "".join(difflib.unified_diff(
            (self.old or "").splitlines(keepends=True), self.new.splitlines(keepends=True),
            fromfile=f"{self.path}" if self.old is not None else "/dev/null",
            tofile=f"{self.path}"))


@dataclass
class CheckOutcome:
    """What one rule found on one host (and, for harden, what it will change)."""

    rule: str
    severity: str
    title: str
    status: CheckStatus
    detail: str = ""
    expected: str | None = None
    actual: str | None = None
    #: the input the check could not be made without (e.g. ``pki``): harden reports
    #: an error, audit "not checked" (there is nothing to compare with)
    missing: str | None = None
    #: what would fix it on this host, from what was seen (None: the rule's remediation)
    fix: str | None = None


@dataclass
class RulePlan:
    """Every rule's outcome on one host, the files that change, commands, handlers."""

    host: str
    outcomes: list[CheckOutcome] = field(default_factory=list)
    files: dict[str, FileChange] = field(default_factory=dict)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (rule id, command)
    handlers: list[str] = field(default_factory=list)
    reboot_required: list[str] = field(default_factory=list)
    #: files a wrong edit of which locks the operator out (sshd): written in a guarded
    #: step of their own (validated, reloaded, proven by a second login, else restored)
    guarded: dict[str, list[str]] = field(default_factory=dict)  # path -> rule ids

    @property
    def changes(self) -> int:
        return len(self.files) + len(self.commands)

    def diff(self) -> str:
        """Every change as one reviewable text (files, commands, handlers)."""
        parts = [c.diff() for c in self.files.values()]
        parts += [f"# {rid}: run: {cmd}\n" for rid, cmd in self.commands]
        parts += [f"# handler: restart {h}\n" for h in self.handlers]
        return "".join(parts)


class Workspace:
    """Current file texts as rules edit them one after another."""

    def __init__(self, facts: HostFacts) -> None:
        self.facts = facts
        self.texts: dict[str, str] = {}
        self.meta: dict[str, tuple[str, str, str, bool]] = {}

    def text(self, path: str) -> str:
        """The file's text as the rules evaluated so far left it."""
        if path not in self.texts:
            self.texts[path] = self.facts.text(path)
        return self.texts[path]

    def put(self, path: str, text: str, mode: str | None = None, owner: str | None = None,
            group: str | None = None, secret: bool = False) -> None:
        """Set the file's new text (and metadata; unset metadata keeps what an earlier
        rule set, else what the host has)."""
        self.texts[path] = text
        f = self.facts.file(path)
        m0, o0, g0, s0 = self.meta.get(path, (f.mode or "644", f.owner or "root",
                                              f.group or "root", False))
        self.meta[path] = (mode or m0, owner or o0, group or g0, secret or s0)

    def snapshot(self, path: str) -> tuple[str | None, tuple[str, str, str, bool] | None]:
        """What :meth:`restore` puts back."""
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
            or (f.content is None and f.sha256 == sha256_text(text))))
        same_meta = f.exists and (f.mode or "").lstrip("0") == mode.lstrip("0") and \
            f.owner == owner and f.group == group
        if same_content and same_meta:
            return None
        return FileChange(path, f.content if f.exists else None, text, mode, owner, group,
                          secret)

    def changes(self) -> dict[str, FileChange]:
        """Every file whose writing would change the host."""
        return {p: c for p in self.texts if (c := self.change(p)) is not None}


def sha256_text(text: str) -> str:
    """Return the SHA-256 hex digest of ``text`` encoded as UTF-8."""
    return hashlib.sha256(text.encode()).hexdigest()


def outcome(rule: Rule, status: CheckStatus, detail: str = "", expected: Any = None,
            actual: Any = None, missing: str | None = None,
            fix: str | None = None) -> CheckOutcome:
    """A rule's outcome with expected/actual as text (``fix``: this host's remediation)."""
    return CheckOutcome(rule.id, rule.severity, rule.title, status, detail,
                        None if expected is None else str(expected),
                        None if actual is None else str(actual), missing, fix)


def manual(rule: Rule, expected: Any, actual: Any, fix: str | None = None) -> CheckOutcome:
    """Not compliant, and no automatic fix: ``fix`` (what would fix it on this host) or
    the rule's remediation text says what to do."""
    return outcome(rule, MANUAL, fix or rule.remediation or "", expected, actual, fix=fix)


@dataclass(frozen=True)
class Check:
    """One rule's evaluation on one host: everything a kind's ``evaluate`` receives.

    ``body`` is the rule's ``check:`` mapping rendered with the host's variables; ``ws``
    holds the planned file contents, ``plan`` collects commands, guarded files and reboot
    notes, ``ctx`` is the site's rendering context.
    """

    rule: Rule
    body: dict[str, Any]
    facts: HostFacts
    ws: Workspace
    plan: RulePlan
    ctx: Context

    def outcome(self, status: CheckStatus, detail: str = "", expected: Any = None,
                actual: Any = None, missing: str | None = None,
                fix: str | None = None) -> CheckOutcome:
        """This rule's outcome (see :func:`outcome`)."""
        return outcome(self.rule, status, detail, expected, actual, missing, fix)

    def manual(self, expected: Any, actual: Any, fix: str | None = None) -> CheckOutcome:
        """Not compliant, no automatic fix (see :func:`manual`)."""
        return manual(self.rule, expected, actual, fix)


def lsm_active(lsm: str, facts: HostFacts) -> bool:
    """Is this LSM enforcing in the running kernel?"""
    return facts.selinux_enabled if lsm == "selinux" else facts.apparmor_enabled if \
        lsm == "apparmor" else False


def lsm_state(lsm: str, facts: HostFacts) -> tuple[str, str]:
    """What the running kernel shows of ``lsm``, and what would make it active on this
    host (a reboot only where the kernel has it and the boot arguments turn it off)."""
    lsms = ",".join(facts.lsms) if facts.lsms is not None else "unreadable"
    if lsm == "apparmor":
        if not facts.apparmor_module:
            return (f"LSMs {lsms}; no AppArmor in this kernel",
                    "a reboot alone does not help: boot a kernel built with AppArmor "
                    "(apparmor=1 security=apparmor)")
        return (f"LSMs {lsms}; apparmor module enabled: {facts.apparmor_module}",
                "enable AppArmor at boot (apparmor=1 security=apparmor, or apparmor in lsm=) "
                "and reboot")
    if facts.lsms is not None and "selinux" not in facts.lsms:
        return (f"LSMs {lsms}; SELinux not among them",
                "a reboot alone does not help unless the kernel has SELinux: boot with "
                "selinux=1 security=selinux (or selinux in lsm=) and SELINUX=enforcing in "
                "/etc/selinux/config, with a relabel")
    return (f"getenforce: {facts.getenforce or 'Disabled'}",
            "set SELINUX=enforcing in /etc/selinux/config (metalctl harden --rule SEL-001 "
            "schedules the relabel) and reboot")


def expand(path: str) -> list[str]:
    """Paths that depend on the libvirt daemon flavour: gather both, use the one that fits."""
    if "{libvirt_daemon}" in path:
        return [path.replace("{libvirt_daemon}", d) for d in ("libvirtd", "virtproxyd")]
    return [path]
