"""The rack file: what ``metalctl run`` drives, as data (schema ``rack``, docs/run.md).

Loading checks everything that can be checked without a peer: the schema, the BMC
ranges, that every profile and the kickstart template exist, and the failure budget.
Every error is an :class:`~metalctl.errors.InputError` naming the file, the field and
its line, raised before anything is probed or written.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metalctl import data as datafiles
from metalctl.credentials import CredentialSet
from metalctl.data import fields
from metalctl.errors import CredentialsError, InputError, MetalctlError, mask_url, one_line
from metalctl.model.node import DiscoveryRecord
from metalctl.model.topology import Topology
from metalctl.netaddrs import Target, parse_targets
from metalctl.profile.library import ProfileLibrary
from metalctl.provision.bootstate import BootFiles
from metalctl.provision.kickstart import target_os

#: the pipeline's stages, in order (each reaches the lifecycle state of the same rank)
#: the run's steps in order; ``verify`` is the profile stage after install (it records
#: no lifecycle state of its own)
STAGES = ("discover", "enroll", "profile", "provision", "verify", "harden", "audit",
          "handoff")

#: default nodes per stage at once; bmc_power bounds stages that power-cycle nodes
DEFAULT_CONCURRENCY = {"discover": 64, "enroll": 16, "profile": 8, "provision": 4, "verify": 8,
                       "harden": 8, "audit": 8, "handoff": 4, "bmc_power": 8}


@dataclass(frozen=True)
class ProfileRule:
    """``when`` (every key holds) -> ``profile``; ``line`` for messages."""

    when: dict[str, Any]
    profile: str
    line: int | None = None


@dataclass(frozen=True)
class FailureBudget:
    """How many failed nodes the run tolerates before it starts nothing new.

    ``count`` nodes, or ``percent`` of the nodes in the run; the budget is spent when
    the failures *exceed* it (``0`` = stop at the first failure).
    """

    count: int | None = None
    percent: float | None = None

    @classmethod
    def parse(cls, value: int | str | None, label: str = "--max-failures",
              field_: str = "max_failures") -> FailureBudget:
        """``N``, ``"N"`` or ``"N%"``; None: unlimited.

        Raises:
            InputError: not N or N%.
        """
        if value is None:
            return cls()
        text = str(value).strip()
        try:
            if text.endswith("%"):
                pct = float(text[:-1])
                if not 0 <= pct <= 100:
                    raise ValueError(text)
                return cls(percent=pct)
            count = int(text)
            if count < 0:
                raise ValueError(text)
            return cls(count=count)
        except ValueError:
            raise InputError(label, field_, f"{text!r} is not N or N% (0-100%)") from None

    def allowed(self, nodes: int) -> float:
        """Failures tolerated among ``nodes``; infinity when unlimited."""
        if self.count is not None:
            return self.count
        if self.percent is not None:
            return nodes * self.percent / 100.0
        return float("inf")

    def spent(self, failed: int, nodes: int) -> bool:
        return failed > self.allowed(nodes)

    def __str__(self) -> str:
        if self.count is not None:
            return str(self.count)
        return f"{self.percent:g}%" if self.percent is not None else "unlimited"


@dataclass(frozen=True)
class Rack:
    """A loaded, checked rack file. Paths in it are resolved against its folder."""

    path: Path
    name: str
    ranges: tuple[str, ...]
    targets: tuple[Target, ...]
    credentials: tuple[str, ...]
    protocols: tuple[str, ...] = ("redfish", "ipmi")
    redfish_scheme: str = "https"
    ca_bundle: Path | None = None
    ironic: dict[str, Any] = field(default_factory=dict)
    site: dict[str, Path | str] = field(default_factory=dict)
    default_profile: str = "compute-general"
    profile_rules: tuple[ProfileRule, ...] = ()
    bios: str = "required"
    reboot: bool = False
    provision: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    failure_budget: FailureBudget = FailureBudget()
    until: str | None = None
    concurrency: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_CONCURRENCY))
    #: the line of each field (for errors found after loading)
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict, repr=False,
                                                    compare=False)

    def error(self, where: tuple[str | int, ...], reason: str) -> InputError:
        """An :class:`InputError` naming this rack file, the field and its line."""
        return InputError(str(self.path), datafiles.loader.field_name(where), reason,
                          _line(self.lines, where))

    def check_files(self) -> None:
        """Read and validate the files a rack names for its later stages (the provision
        site, the Nova site) as those stages will, whatever ``--until`` says: the rack is
        checked whole before anything runs (docs/run.md), not when a stage first needs it.

        Raises:
            InputError: naming that file (or the credentials it names) and the field.
        """
        from metalctl.handoff import load_site as load_nova_site  # noqa: PLC0415
        from metalctl.hosts import load_site  # noqa: PLC0415
        from metalctl.provision import kickstart  # noqa: PLC0415

        if self.provision.get("site"):
            path = Path(self.provision["site"])
            kickstart.load_site(load_site(path), label=str(path))
        if self.site.get("nova"):
            load_nova_site(Path(str(self.site["nova"])))

    def credential_sets(self, resolve: Callable[[str], CredentialSet]
                        ) -> dict[str, CredentialSet]:
        """Each set ``bmc.credentials`` names (``a+b``: both), through ``resolve``.

        Raises:
            InputError: a set found nowhere, naming the rack's field (and where the set
                was looked for); a malformed credentials file names that file.
        """
        out: dict[str, CredentialSet] = {}
        for i, names in enumerate(self.credentials):
            for name in names.split("+"):
                try:
                    out[name] = out.get(name) or resolve(name)
                except CredentialsError as exc:
                    if exc.kwargs.get("field") != name:
                        raise
                    where = ("bmc", "credentials", i)
                    raise CredentialsError(str(self.path), datafiles.loader.field_name(where),
                                           f"credential set {name!r}: "
                                           f"{exc.kwargs.get('reason')} (looked in "
                                           f"{exc.kwargs.get('path')})",
                                           _line(self.lines, where)) from None
        return out

    def select_profile(self, record: DiscoveryRecord | None, topo: Topology | None) -> str:
        """The first rule whose ``when`` holds for this node, else the default profile."""
        for rule in self.profile_rules:
            if matches(rule.when, record, topo):
                return rule.profile
        return self.default_profile


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load(path: Path | str, *, profile_dirs: list[Path] | None = None) -> Rack:
    """Read and check a rack file.

    Raises:
        InputError: ``file:line: field: reason``; nothing has been touched.
    """
    p = Path(path)
    data, lines = datafiles.load_with_lines(p, "rack")
    label = str(p)

    def fail(where: tuple[str | int, ...], reason: str) -> InputError:
        return InputError(label, datafiles.loader.field_name(where), reason, _line(lines, where))

    bmc = data["bmc"]
    try:
        targets = parse_targets(bmc["ranges"], max_addresses=bmc.get("max_addresses", 65536),
                                source="bmc.ranges")
    except InputError as exc:
        where = str(exc.kwargs.get("path", "bmc.ranges"))
        index = int(where.split("[")[1].rstrip("]")) if "[" in where else None
        key: tuple[str | int, ...] = ("bmc", "ranges") if index is None else \
            ("bmc", "ranges", index)
        raise fail(key, str(exc.kwargs.get("reason", exc))) from None
    base = p.parent

    def rel(value: str | None, where: tuple[str | int, ...] = ()) -> Path | None:
        """A path of the rack file: ``${VAR}`` from the environment (a lab directory,
        a site's install root), then relative to the rack file's folder."""
        if value is None:
            return None
        return (base / expand(value, where)).resolve()

    def expand(value: str, where: tuple[str | int, ...]) -> str:
        """``${VAR}`` from the environment; an unset one names the field."""
        missing = [m for m in _VAR.findall(value) if m not in os.environ]
        if missing:
            raise fail(where, f"${{{missing[0]}}} is not set in the environment")
        return _VAR.sub(lambda m: os.environ[m.group(1)], value)

    profiles = data.get("profiles") or {"default": "compute-general"}
    library = ProfileLibrary(list(profile_dirs or []))
    rules = tuple(ProfileRule(r["when"], r["profile"], _line(lines, ("profiles", "rules", i)))
                  for i, r in enumerate(profiles.get("rules") or ()))
    for where, name in [(("profiles", "default"), profiles["default"]),
                        *((("profiles", "rules", i, "profile"), r.profile)
                          for i, r in enumerate(rules))]:
        try:
            library.path(name)
        except MetalctlError as exc:
            raise fail(where, str(exc.kwargs.get("reason", exc))) from None
    provision = dict(data.get("provision") or {})
    if "template" in provision:
        kickstart = datafiles.data_dir("kickstart")
        name = provision["template"].removesuffix(".ks.j2")
        if not (kickstart / f"{name}.ks.j2").is_file():
            known = ", ".join(sorted(x.name for x in kickstart.glob("[!_]*.ks.j2")))
            raise fail(("provision", "template"), f"no such template in {kickstart} "
                                                  f"(known: {known})")
    if "os" in provision:
        try:
            target_os(provision["os"])
        except InputError as exc:
            raise fail(("provision", "os"), str(exc.kwargs.get("reason", exc))) from None
    for k in ("site", "ssh_key", "known_hosts", "boot_dir", "files_dir", "dnsmasq_conf"):
        if k in provision:
            provision[k] = rel(provision[k], ("provision", k))
    if "serve" in provision:  # ADDR[:PORT], or ${VAR} (the lab exports its own)
        provision["serve"] = expand(str(provision["serve"]), ("provision", "serve"))
    for k in ("boot_url", "kernel", "initrd", "stage2"):  # URLs via Ironic
        if k in provision:
            provision[k] = expand(str(provision[k]), ("provision", k))
    if "boot_url" in provision and not re.match(r"https?://[^/\s]", provision["boot_url"]):
        raise fail(("provision", "boot_url"), "not an http(s):// URL")
    if provision.get("ironic"):
        provision["ironic"] = {k: expand(str(v), ("provision", "ironic", k))
                               for k, v in provision["ironic"].items()}
    site = {k: str(rel(v, ("site", k))) if k != "ssh_user" else v
            for k, v in (data.get("site") or {}).items()}
    audit = dict(data.get("audit") or {})
    if "waivers" in audit:
        audit["waivers"] = rel(audit["waivers"], ("audit", "waivers"))
    ca_bundle = rel(bmc.get("ca_bundle"), ("bmc", "ca_bundle"))
    sections = {"bmc": {"ca_bundle": ca_bundle}, "site": site, "provision": provision,
                "audit": audit}
    written = {provision.get("known_hosts")}
    for (section, key), kind in PATHS.items():
        value = sections[section].get(key)
        if value is not None:  # the file harden reads may be the one provision writes
            kind = "output" if key == "known_hosts" and Path(value) in written else kind
            problem = fields.path_problem(Path(value), kind)
            if problem:
                raise fail((section, key), f"{one_line(str(value))}: {problem}")
    _check_addresses(data, provision, fail)
    budget = FailureBudget.parse(data.get("failure_budget"), label, "failure_budget")
    return Rack(
        path=p, name=data.get("name") or p.stem, ranges=tuple(bmc["ranges"]),
        targets=tuple(targets), credentials=tuple(bmc["credentials"]),
        protocols=tuple(bmc.get("protocols") or ("redfish", "ipmi")),
        redfish_scheme=bmc.get("redfish_scheme", "https"),
        ca_bundle=ca_bundle,
        ironic=dict(data.get("ironic") or {}),
        site=site, default_profile=profiles["default"], profile_rules=rules,
        bios=profiles.get("bios", "required"), reboot=bool(profiles.get("reboot", False)),
        provision=provision, audit=audit, failure_budget=budget,
        until=data.get("until"),
        concurrency={**DEFAULT_CONCURRENCY, **(data.get("concurrency") or {})},
        lines=lines,
    )


#: every path field of the rack file and what it must be (docs/run.md: checked at load)
PATHS: dict[tuple[str, str], fields.PathKind] = {
    ("bmc", "ca_bundle"): "file-or-dir",
    ("site", "policy"): "file", ("site", "pki_dir"): "state-dir", ("site", "ssh_key"): "file",
    ("site", "known_hosts"): "file", ("site", "nova"): "file",
    ("provision", "site"): "file", ("provision", "ssh_key"): "file",
    ("provision", "known_hosts"): "output", ("provision", "boot_dir"): "state-dir",
    ("provision", "files_dir"): "dir", ("provision", "dnsmasq_conf"): "file",
    ("audit", "waivers"): "file",
}


def _check_addresses(data: dict[str, Any], provision: dict[str, Any],
                     fail: Callable[[tuple[str | int, ...], str], InputError]) -> None:
    """URLs and ADDR[:PORT] fields (ports 1-65535), and the boot files: each a URL or a
    plain path, and a path must be in ``files_dir`` when the rack names one."""
    for where, url in ((("ironic", "url"), (data.get("ironic") or {}).get("url")),
                       (("provision", "boot_url"), provision.get("boot_url"))):
        problem = fields.url_problem(url) if url else None
        if problem:
            raise fail(where, f"{one_line(mask_url(url))[:120]!r}: {problem}")
    if provision.get("serve"):
        try:
            fields.split_host_port(provision["serve"])
        except ValueError as exc:
            raise fail(("provision", "serve"), f"{provision['serve'][:80]!r}: {exc}") from None
    files_dir = provision.get("files_dir")
    for key in ("kernel", "initrd", "stage2"):
        value = provision.get(key)
        if value is None:
            continue
        try:
            BootFiles(value, value, None).validate()
        except InputError as exc:
            raise fail(("provision", key), str(exc.kwargs.get("reason", exc))) from None
        if files_dir and "://" not in value and not (Path(files_dir) / value).is_file():
            raise fail(("provision", key), f"{one_line(value)!r}: no such file in "
                                           f"files_dir {files_dir}")


def _line(lines: dict[Any, int], where: tuple[str | int, ...]) -> int | None:
    for cut in range(len(where), -1, -1):
        if where[:cut] in lines:
            return lines[where[:cut]]
    return None


# --- the match language (docs/run.md "Profile selection") ----------------------------------


def _any(patterns: str | list[str], value: str | None) -> bool:
    """Case-insensitive shell-style match of ``value`` against one pattern or a list."""
    if value is None:
        return False
    pats = [patterns] if isinstance(patterns, str) else patterns
    return any(fnmatch.fnmatchcase(value.lower(), p.lower()) for p in pats)


def matches(when: dict[str, Any], record: DiscoveryRecord | None,
            topo: Topology | None) -> bool:
    """Whether every condition of ``when`` holds; a fact that is unknown never matches.

    Facts come from the discovery record (what the BMC said) and the node's topology
    (stored facts: in-band, Ironic inspection, or the BMC's partial view).
    """
    return all(_holds(key, want, record, topo) for key, want in when.items())


def _memory_gib(hw: Any, topo: Topology | None) -> float | None:
    """Memory in GiB: the topology's NUMA nodes when all are known (in-band facts are
    exact), else what the BMC said."""
    if topo and topo.numa and all(n.memory_mib is not None for n in topo.numa):
        return sum(n.memory_mib or 0 for n in topo.numa) / 1024
    return hw.memory_gib if hw is not None else None


def _holds(key: str, want: Any, rec: DiscoveryRecord | None, topo: Topology | None) -> bool:
    hw = rec.hardware if rec else None
    nics = topo.nics if topo else ()
    if key in ("vendor", "manufacturer", "model", "name", "address"):
        return rec is not None and _any(want, getattr(rec, key))
    if key == "protocol":
        return rec is not None and rec.protocol is not None and rec.protocol.value == want
    if key == "cpu_vendor":
        return topo is not None and topo.cpu_vendor == want
    if key in ("memory_gib_min", "memory_gib_max"):
        gib = _memory_gib(hw, topo)
        if gib is None:
            return False
        return gib >= want if key == "memory_gib_min" else gib <= want
    if key == "cpu_threads_min":
        threads = (len(topo.online()) if topo and topo.cpus else None) or \
            (hw.cpu.threads if hw else None)
        return threads is not None and threads >= want
    if key == "numa_nodes_min":
        count = (len(topo.node_ids()) if topo and topo.cpus else None) or \
            (hw.numa_nodes if hw else None)
        return count is not None and count >= want
    if key == "nics_min":
        return len(nics or (hw.nics if hw else ())) >= want
    if key == "sriov_nic":
        has = any((n.max_vfs or 0) > 0 for n in nics) or \
            any(n.sriov_capable for n in (hw.nics if hw else ()))
        return has == want
    if key == "sriov_nic_on_numa":
        return any((n.max_vfs or 0) > 0 and n.numa_node == want for n in nics)
    if key == "nic_vendor_id":
        return any(_any(want, n.vendor_id) for n in nics)
    raise InputError("rack", f"when.{key}", "unknown condition")  # the schema forbids it
