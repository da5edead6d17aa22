"""The audit's runtime rules, judged while the canary runs.

A hand-off's audit runs before any guest exists, so a rule about running guests
(``VRT-002``: every QEMU confined by sVirt, no two sharing an MCS pair) is "not
applicable" there: it has nothing to judge. The canary is the first guest the host ever
runs, so its checks include those rules, evaluated by the same rules engine and check
kinds as ``metalctl audit`` (a foundation, not the audit stage), over the hand-off's SSH
session. Their verdicts are canary checks named after the rule.
"""

from __future__ import annotations

from typing import Any

from metalctl import ssh
from metalctl.rules import catalogue, engine, gather

#: the catalogue's rules that need a running guest to judge
RUNTIME_RULES = ("VRT-002",)



def judge(conn: Any, target: ssh.SshTarget, host: str, mgmt_address: str
          ) -> list[tuple[str, str, str, str]]:
    """The runtime rules' verdicts, read on the host now (one round trip)."""
    rules = _rules()
    out = ssh.run_script(conn, target, gather.script(engine.gather_spec(rules)))
    return verdicts(gather.parse(out, host), host, mgmt_address, rules)


def _rules() -> list[catalogue.Rule]:
    return [r for r in catalogue.load() if r.id in RUNTIME_RULES]


def verdicts(facts: gather.HostFacts, host: str, mgmt_address: str,
             rules: list[catalogue.Rule] | None = None) -> list[tuple[str, str, str, str]]:
    """``(rule id, pass | fail | unavailable, expected, actual)`` per runtime rule. A rule
    that found nothing to judge (no QEMU running: the canary is gone) is ``unavailable``,
    never a pass; so is one on a kernel without an LSM (the canary's ``svirt-label`` says
    the same, and the audit's LSM rules judge that host)."""
    rules = _rules() if rules is None else rules
    plan = engine.evaluate(rules, facts, engine.Context(host, mgmt_address, [], {}))
    lsm = facts.selinux_enabled or facts.apparmor_enabled
    out = []
    for o in plan.outcomes:
        if o.status == engine.COMPLIANT:
            status = "pass"
        elif o.status in (engine.NOTAPPLICABLE, engine.NOTCHECKED) or not lsm:
            status = "unavailable"
        else:
            status = "fail"
        out.append((o.rule, status, o.expected or o.title,
                    o.actual or o.detail or o.status.value))
    return out
