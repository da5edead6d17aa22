"""Kinds that install whole files: fixed content, or the host's certificates and keys from
the site PKI (``source: pki:<name>``; keys are gathered as hashes only and never shown
in diffs).
"""

from __future__ import annotations

import fnmatch
import shlex
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec
from metalctl.rules.kinds import STR, STRS, register
from metalctl.rules.plan import CHANGE, COMPLIANT, ERROR, NOTCHECKED, Check, CheckOutcome, expand

_FILE = {
    "path": STR,
    "content": {"type": "string"},
    "mode": {"type": "string", "pattern": "^0?[0-7]{3,4}$"},
    "group": STR,
    "source": {"type": "string", "pattern": "^pki:[a-z_]+$"},
}


def _specs(c: dict[str, Any]) -> list[dict[str, Any]]:
    return c["files"] if c["kind"] == "files" else [c]


def _pki_sources(c: dict[str, Any]) -> list[str]:
    return [s["source"].split(":", 1)[1] for s in _specs(c) if s.get("source")]


def _gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    for f in _specs(c):
        for path in expand(f["path"]):
            (spec.hashed if str(f.get("source", "")).startswith("pki:") else spec.content).add(path)


@register(
    "file",
    body=_FILE,
    required=("path",),
    one_of=("content", "source"),
    gather=_gather,
    pki_sources=_pki_sources,
)
@register(
    "files",
    body={
        "files": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path"],
                "oneOf": [{"required": ["content"]}, {"required": ["source"]}],
                "properties": _FILE,
            },
        }
    },
    required=("files",),
    gather=_gather,
    pki_sources=_pki_sources,
)
def k_files(ck: Check) -> CheckOutcome:
    """Check files' content, mode and group; write those that differ.

    The content is inline or PKI material of the host (certificates, keys).
    """
    specs = ck.body["files"] if ck.body["kind"] == "files" else [ck.body]
    changed = []
    for spec in specs:
        source = spec.get("source")
        if source:
            name = source.split(":", 1)[1]
            if name not in ck.ctx.pki:
                return ck.outcome(
                    ERROR,
                    f"no PKI material {name!r} for {ck.ctx.host}: run "
                    "`metalctl pki issue` for this host",
                    missing="pki",
                )
            content = ck.ctx.pki[name]
        else:
            content = spec["content"]
        group = spec.get("group", "root")
        if group not in ck.facts.groups:
            return ck.outcome(ERROR, f"group {group} does not exist on the host")
        secret = source is not None and source.endswith("_key")
        saved = ck.ws.snapshot(spec["path"])
        ck.ws.put(spec["path"], content, mode=spec.get("mode", "0644"), group=group, secret=secret)
        if ck.ws.change(spec["path"]) is not None:
            changed.append(spec["path"])
        else:
            ck.ws.restore(spec["path"], saved)
    if not changed:
        return ck.outcome(COMPLIANT)
    return ck.outcome(CHANGE, "", actual="; ".join(f"{p} differs" for p in changed))


# --- permissions of existing files ---------------------------------------------------------


def _gather_modes(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.stat_globs.update(c["paths"])  # mode and owner only: never nova.conf's secrets


@register("file_modes",
          body={"paths": {**STRS, "minItems": 1},
                "clear": {"type": "string", "pattern": "^0?[0-7]{3,4}$"}},
          required=("paths", "clear"), gather=_gather_modes)
def k_file_modes(ck: Check) -> CheckOutcome:
    """Every existing file of ``paths`` (paths or globs) has the ``clear`` mode bits
    clear; harden clears them (``chmod``, owner and group kept). Nothing selected is
    ``notchecked``, never a pass: a check of no file proves nothing."""
    clear = int(ck.body["clear"], 8)
    found = sorted(p for p in ck.facts.files if ck.facts.files[p].exists and
                   any(fnmatch.fnmatch(p, g) for g in ck.body["paths"]))
    expected = f"mode without {ck.body['clear']} bits"
    if not found:
        return ck.outcome(NOTCHECKED, f"none of {', '.join(ck.body['paths'])} exists on the host")
    bad = [(p, int(ck.facts.files[p].mode or "0", 8)) for p in found
           if int(ck.facts.files[p].mode or "0", 8) & clear]
    if not bad:
        return ck.outcome(COMPLIANT, ", ".join(found), expected,
                          ", ".join(f"{p} {ck.facts.files[p].mode}" for p in found))
    for path, mode in bad:
        new = f"{mode & ~clear:o}"
        if path in ck.ws.texts:  # another rule rewrites it: write it with the new mode
            ck.ws.put(path, ck.ws.text(path), mode=new)
        else:
            ck.plan.commands.append((ck.rule.id, f"chmod {new} {shlex.quote(path)}"))
    return ck.outcome(CHANGE, "", expected,
                      ", ".join(f"{p} {m:o}" for p, m in bad),
                      fix="chmod " + "; chmod ".join(f"{mode & ~clear:o} {p}" for p, mode in bad)
                      + f" (or metalctl harden --rule {ck.rule.id})")
