"""Kinds about package repositories: only the site's declared repositories, with pinned
signing keys (dnf ``*.repo``, apt ``sources.list``), and the pending-updates report.
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from metalctl.rules import deb822, edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec
from metalctl.rules.kinds import register
from metalctl.rules.plan import (
    APT_FILES,
    APT_GLOB,
    APT_SOURCES_GLOB,
    CHANGE,
    COMPLIANT,
    DNF_GLOB,
    ERROR,
    NOTCHECKED,
    REPORT,
    Check,
    CheckOutcome,
    Workspace,
)


def _gather_report(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.probes[rule.id + "-dnf"] = f"command -v dnf >/dev/null && {{ {c['probe_dnf']}; }}"
    spec.probes[rule.id + "-apt"] = f"command -v apt-get >/dev/null && {{ {c['probe_apt']}; }}"


def _gather_dnf(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.globs.add(DNF_GLOB)


def _gather_apt(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.content.update(APT_FILES)
    spec.globs.update({APT_GLOB, APT_SOURCES_GLOB})


@register(
    "report",
    body={
        "probe_dnf": {"type": "string", "minLength": 1},
        "probe_apt": {"type": "string", "minLength": 1},
    },
    required=("probe_dnf", "probe_apt"),
    gather=_gather_report,
)
def k_report(ck: Check) -> CheckOutcome:
    """Report what the package managers' probes said (pending updates); never a change."""
    parts = []
    for pm in ("dnf", "apt"):
        out = ck.facts.probes.get(f"{ck.rule.id}-{pm}", "").strip()
        if out:
            last = out.splitlines()[-1]
            parts.append(f"{pm}: {last + ' pending' if last.isdigit() else last[:100]}")
    return ck.outcome(REPORT, "; ".join(parts) or "no package manager answered")


@register("dnf_allowlist", gather=_gather_dnf)
def k_dnf_allowlist(ck: Check) -> CheckOutcome:
    """Disable dnf repositories the site does not declare; pin declared ones' gpgkey."""
    declared = {r["id"]: r for r in ck.ctx.site.get("repositories", {}).get("dnf") or []}
    if not declared:
        return ck.outcome(
            NOTCHECKED,
            "the site declares no dnf repositories (hardening/site.yaml repositories.dnf)",
        )
    actions = []
    for path in sorted(p for p in ck.facts.files if fnmatch.fnmatch(p, DNF_GLOB)):
        text = ck.ws.text(path)
        new = text
        for section in edit.ini_sections(text):
            if section not in declared:
                if edit.get_ini(new, section, "enabled") != "0":
                    new = edit.set_ini(new, section, "enabled", "0")
                    actions.append(f"disabled undeclared repo {section} ({path})")
            elif (
                declared[section].get("gpgkey")
                and edit.get_ini(new, section, "gpgkey") != declared[section]["gpgkey"]
            ):
                new = edit.set_ini(new, section, "gpgkey", declared[section]["gpgkey"])
                actions.append(f"pinned gpgkey of {section}")
        if new != text:
            ck.ws.put(path, new)
    if not actions:
        return ck.outcome(COMPLIANT)
    return ck.outcome(CHANGE, "", actual="; ".join(actions))


_APT_LINE = re.compile(r"^\s*(deb|deb-src)\s+(\[[^\]]*\]\s+)?(\S+)\s+(.*)$")


def _declared(uri: str, declared: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((d for d in declared if uri.rstrip("/").startswith(d["uri"].rstrip("/"))),
                None)


def _one_line(path: str, ws: Workspace, declared: list[dict[str, Any]],
              seen: list[str], actions: list[str], problems: list[str]) -> None:
    """One-line-style sources (``sources.list``, ``*.list``)."""
    out = []
    for line in ws.text(path).splitlines():
        m = _APT_LINE.match(line)
        if not m:
            out.append(line)
            continue
        kind, opts, uri, rest = m.group(1), (m.group(2) or "").strip(), m.group(3), m.group(4)
        seen.append(uri)
        match = _declared(uri, declared)
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


def _deb822(path: str, ws: Workspace, declared: list[dict[str, Any]],
            seen: list[str], actions: list[str], problems: list[str]) -> None:
    """deb822 sources (``*.sources``): a stanza is the unit apt reads, so an undeclared
    URI disables its stanza (``Enabled: no``), never a part of it."""
    stanzas = deb822.parse(ws.text(path))
    out = []
    for st in stanzas:
        uris = st.words("URIs")
        if not st.enabled or not uris:
            out.append(st)
            continue
        seen.extend(uris)
        matches = [_declared(u, declared) for u in uris]
        trusted = st.fields.get("trusted", "no").strip().lower() == "yes"
        if declared and None in matches:
            bad = [u for u, m in zip(uris, matches, strict=True) if m is None]
            out.append(deb822.disable(st, "disabled undeclared source " + " ".join(bad)))
            actions.append(f"disabled {' '.join(bad)} ({path})")
            continue
        if trusted and None in matches:
            problems.append(f"{' '.join(uris)} is Trusted: yes; declare it with its "
                            "signed-by keyring in the site policy")
            out.append(st)
            continue
        match = matches[0]
        if match is not None and (trusted or not st.fields.get("signed-by")):
            st = deb822.set_field(deb822.drop_field(st, "Trusted"), "Signed-By",
                                  match["signed_by"])
            actions.append(f"{' '.join(uris)}: "
                           f"{'Trusted: yes replaced by' if trusted else 'pinned'} "
                           f"Signed-By ({path})")
        out.append(st)
    new = deb822.render(out)
    if new != ws.text(path):
        ws.put(path, new)


@register("apt_allowlist", gather=_gather_apt)
def k_apt_allowlist(ck: Check) -> CheckOutcome:
    """Disable apt sources the site does not declare, in both formats apt reads (one-line
    ``sources.list``/``*.list`` and deb822 ``*.sources``); pin declared ones' signed-by."""
    declared = ck.ctx.site.get("repositories", {}).get("apt") or []
    actions: list[str] = []
    problems: list[str] = []
    seen: list[str] = []
    for path in sorted(p for p in ck.facts.files if ck.facts.files[p].exists and (
            p in APT_FILES or fnmatch.fnmatch(p, APT_GLOB))):
        _one_line(path, ck.ws, declared, seen, actions, problems)
    for path in sorted(p for p in ck.facts.files if ck.facts.files[p].exists and
                       fnmatch.fnmatch(p, APT_SOURCES_GLOB)):
        _deb822(path, ck.ws, declared, seen, actions, problems)
    if problems:
        return ck.outcome(ERROR, "; ".join(problems))
    if not declared:
        return ck.outcome(
            NOTCHECKED if not actions else CHANGE,
            "the site declares no apt sources (hardening/site.yaml repositories.apt)",
        )
    if not seen:
        return ck.outcome(NOTCHECKED, "no enabled apt source found in /etc/apt/sources.list, "
                          "sources.list.d/*.list or *.sources")
    if not actions:
        return ck.outcome(COMPLIANT, "", "only declared sources, signed-by pinned",
                          " ".join(sorted(set(seen))))
    return ck.outcome(CHANGE, "", "only declared sources, signed-by pinned",
                      "; ".join(actions))
