"""The ``sshd`` kind: judged on ``sshd -T`` (drop-ins, Include order and first-match
resolved), remediated through one drop-in, ``/etc/ssh/sshd_config.d/50-metalctl.conf``.

sshd takes the FIRST value of a keyword, so the drop-in must be read before anything
else that sets the same keyword: the main config gets an ``Include`` of the drop-in at
its top when none covers it, and lines that set a managed keyword earlier (the main
config above its ``Include``, drop-ins that sort before ours) are commented out with a
marker. Every file this kind edits is *guarded* (``RulePlan.guarded``): harden writes
them in a step of their own, validated with ``sshd -t``, reloaded, and proven with a
second SSH login before the first session closes, else restored (``harden/run.py``).
"""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from metalctl.rules import edit
from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec, HostFacts
from metalctl.rules.kinds import SCALAR, STR, TEMPLATE, register
from metalctl.rules.plan import CHANGE, COMPLIANT, ERROR, Check, CheckOutcome, Workspace

MAIN = "/etc/ssh/sshd_config"
DROPIN_DIR = "/etc/ssh/sshd_config.d"
DROPIN = f"{DROPIN_DIR}/50-metalctl.conf"
HEADER = ("# Written by metalctl harden (the sshd rules of hardening/rules); sshd takes the\n"
          "# first value of a keyword, so this file is included before other settings.\n")
#: sshd -T prints keywords lower-cased; the drop-in spells them as sshd_config(5) does
KEYWORDS = {k.lower(): k for k in (
    "PermitRootLogin", "PasswordAuthentication", "PermitEmptyPasswords", "X11Forwarding",
    "MaxAuthTries", "HostbasedAuthentication", "IgnoreRhosts", "Ciphers", "MACs",
    "KexAlgorithms", "ClientAliveInterval", "ClientAliveCountMax", "LogLevel", "AllowUsers",
    "AllowGroups", "DenyUsers", "LoginGraceTime", "MaxSessions", "Banner",
    "AllowTcpForwarding", "AllowAgentForwarding", "PermitUserEnvironment", "UsePAM")}


def effective(facts: HostFacts) -> dict[str, str] | None:
    """``sshd -T``'s output as keyword -> value (None: sshd gave no configuration)."""
    out = facts.probes.get("sshd-T")
    if not out or "permitrootlogin" not in out:
        return None
    values: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.strip().partition(" ")
        values.setdefault(key.lower(), value.strip())
    return values


def _gather(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    spec.probes["sshd-T"] = "sshd -T -C user=root,host=localhost,addr=127.0.0.1 2>&1"
    spec.content.update({MAIN, DROPIN})
    spec.globs.add(f"{DROPIN_DIR}/*.conf")


def _judge(c: dict[str, Any], have: str | None) -> tuple[bool, str, str | None]:
    """Compliant?, what is expected, and the value harden writes (None: none fits)."""
    if "allowed" in c:
        allowed = [str(a) for a in c["allowed"]]
        return have in allowed, " or ".join(allowed), allowed[0]
    if "max" in c:
        return (have is not None and have.isdigit() and int(have) <= int(c["max"]),
                f"<= {c['max']}", str(c["max"]))
    if "min" in c:
        return (have is not None and have.isdigit() and int(have) >= int(c["min"]),
                f">= {c['min']}", str(c["min"]))
    if "between" in c:
        low, high = (int(x) for x in c["between"])
        return (have is not None and have.isdigit() and low <= int(have) <= high,
                f"{low}..{high}", str(high))
    # a list value (ciphers, macs, kex): the current list without the forbidden items
    items = [x for x in (have or "").split(",") if x]
    if "only" in c:  # an allow-list: every other algorithm of OpenSSH's list is refused
        kept = [x for x in items if x in c["only"]]
        return (bool(items) and len(kept) == len(items), "only " + ",".join(c["only"]),
                ",".join(kept) or None)
    kept = [x for x in items if not re.search(c["forbid"], x)]
    return len(kept) == len(items), f"no {c['forbid']}", ",".join(kept) or None


def _refused(c: dict[str, Any], have: str | None) -> str:
    """The items of a list value the check refuses."""
    items = [x for x in (have or "").split(",") if x]
    if "only" in c:
        return ",".join(x for x in items if x not in c["only"])
    return ",".join(x for x in items if re.search(c["forbid"], x))


def _include_order(ws: Workspace, facts: HostFacts) -> list[tuple[str, int | None]]:
    """The files sshd reads before the drop-in, as ``(path, Include line or None)``: the
    main config up to the Include that covers the drop-in, and the drop-ins that sort
    before it in that Include. Empty when no Include in the global section covers it."""
    main = ws.text(MAIN)
    for i, keyword, value in edit.sshd_directives(main):
        if keyword != "include":
            continue
        patterns = [p if p.startswith("/") else f"/etc/ssh/{p}" for p in value.split()]
        for pattern in patterns:
            if fnmatch.fnmatch(DROPIN, pattern):
                earlier = sorted(p for p in facts.files if p < DROPIN and
                                 fnmatch.fnmatch(p, pattern) and facts.file(p).exists)
                return [(MAIN, i), *((p, None) for p in earlier)]
    return []


@register(
    "sshd",
    body={
        "key": STR,
        "allowed": {"anyOf": [{"type": "array", "items": SCALAR}, TEMPLATE]},
        "max": {"type": "integer"},
        "min": {"type": "integer"},
        "between": {"type": "array", "items": {"type": "integer"}, "minItems": 2,
                    "maxItems": 2},
        "forbid": STR,
        # a list keyword's allowed items (ciphers, macs, kexalgorithms): any other refused
        "only": {"type": "array", "items": STR, "minItems": 1},
        # the value harden writes when the one derived from the check is not the one
        # wanted (``min: 1`` is compliant, but the drop-in says 300)
        "set": SCALAR,
    },
    required=("key",),
    one_of=("allowed", "max", "min", "between", "forbid", "only"),
    gather=_gather,
)
def k_sshd(ck: Check) -> CheckOutcome:
    """Judged on ``sshd -T``; a wrong value is set in the drop-in (see the module)."""
    values = effective(ck.facts)
    if values is None:
        seen = ck.facts.probes.get("sshd-T", "")[:120]
        return ck.outcome(ERROR, f"sshd -T gave no configuration: {seen}")
    key = ck.body["key"].lower()
    have = values.get(key)
    ok, expected, value = _judge(ck.body, have)
    if ("forbid" in ck.body or "only" in ck.body) and not ok:
        have = _refused(ck.body, have)
    if ok:
        return ck.outcome(COMPLIANT, "sshd -T", expected, have)
    value = str(ck.body["set"]) if "set" in ck.body else value
    if value is None:
        return ck.manual(expected, f"{key} {have}")
    keyword = KEYWORDS.get(key, ck.body["key"])
    ck.ws.put(DROPIN, edit.set_sshd(ck.ws.text(DROPIN) or HEADER, keyword, value), mode="644",
           owner="root", group="root")
    touched = [DROPIN]
    order = _include_order(ck.ws, ck.facts)
    if not order:  # nothing includes the drop-in yet: include exactly it, at the top
        ck.ws.put(MAIN, edit.add_sshd_include(ck.ws.text(MAIN), DROPIN))
        touched.append(MAIN)
    for path, stop in order:  # earlier settings of the keyword would win: comment them out
        lines = ck.ws.text(path).splitlines(keepends=True)
        head = "".join(lines if stop is None else lines[:stop])
        if any(k == key for _, k, _ in edit.sshd_directives(head)):
            tail = "".join([] if stop is None else lines[stop:])
            ck.ws.put(path, edit.disable_sshd(head, keyword, f"superseded by {DROPIN}") + tail)
            touched.append(path)
    for path in touched:
        ck.plan.guarded.setdefault(path, []).append(ck.rule.id)
    return ck.outcome(CHANGE, f"{keyword} {value} in {DROPIN}", expected, f"{key} {have}")
