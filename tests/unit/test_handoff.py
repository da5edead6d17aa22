"""The hand-off's pure parts: the audit gate over a real store, the inventories expected
from a rendered nova.conf and their comparison, nova-compute log lines, masked diffs."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from metalctl.cli.handoff import duration_s
from metalctl.credentials import Secret
from metalctl.handoff import apply, gate, register, verify
from metalctl.handoff.novaconf import NovaConf
from metalctl.store import Store

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as s:
        yield s


def _scan(store: Store, scan_id: str, hours_ago: float, rows, errors=()) -> None:
    at = (NOW - timedelta(hours=hours_ago)).isoformat(timespec="seconds")
    store.save_audit(scan_id, at, {"hosts": 1, "fail": 0, "errors": list(errors)},
                     [(h, r, st, sev, "{}") for h, r, st, sev in rows])


def test_gate_passes_a_recent_audit_with_only_waived_or_low_failures(store):
    _scan(store, "a", 1, [("h1", "SSH-001", "waived", "high"), ("h1", "K-1", "fail", "low"),
                          ("h1", "L-1", "pass", "high")])
    v = gate.check(store, "h1", "high", 86400, NOW)
    assert v.passed, v.reason
    assert v.scan_id == "a"
    assert v.age_s == 3600


def test_gate_lists_every_failing_rule_at_or_above_the_severity(store):
    _scan(store, "a", 1, [("h1", "SSH-001", "fail", "high"), ("h1", "K-1", "fail", "medium"),
                          ("h1", "L-1", "fail", "low")])
    v = gate.check(store, "h1", "medium", 86400, NOW)
    assert not v.passed
    assert v.failing == ["K-1", "SSH-001"]
    assert "K-1, SSH-001" in v.reason


def test_gate_reads_the_latest_scan_of_the_host_only(store):
    _scan(store, "old", 3, [("h1", "SSH-001", "fail", "high")])
    _scan(store, "new", 2, [("h1", "SSH-001", "pass", "high")])
    _scan(store, "other", 1, [("h2", "SSH-001", "fail", "high")])
    assert gate.check(store, "h1", now=NOW).passed
    assert not gate.check(store, "h2", now=NOW).passed


@pytest.mark.parametrize(("setup", "words"), [
    (lambda s: _scan(s, "a", 25, [("h1", "X", "pass", "high")]), "older than 86400 s"),
    (lambda s: _scan(s, "a", 1, [], errors=["h1"]), "could not scan it"),
    (lambda s: None, "never audited"),
])
def test_gate_refuses_old_errored_or_missing_audits(store, setup, words):
    setup(store)
    v = gate.check(store, "h1", "high", 86400, NOW)
    assert not v.passed
    assert words in v.reason


def test_gate_without_a_store_refuses():
    assert not gate.check(None, "h1").passed


def _conf(**default: str) -> NovaConf:
    conf = NovaConf()
    conf.set("DEFAULT", "transport_url", "rabbit://nova:", Secret("s3cr/et!"), "@10.0.0.1/")
    for k, v in default.items():
        conf.set("DEFAULT", k, v)
    conf.set("compute", "cpu_dedicated_set", "2-5")
    conf.set("compute", "cpu_shared_set", "0,1")
    return conf


def test_expected_inventories_come_from_the_rendered_options():
    assert verify.expected(_conf(reserved_host_memory_mb="4096")) == {
        "PCPU": {"total": 4}, "VCPU": {"total": 2, "allocation_ratio": 4.0},
        "MEMORY_MB": {"reserved": 4096}}
    assert verify.expected(_conf(cpu_allocation_ratio="2.0"))["VCPU"]["allocation_ratio"] == 2.0
    assert verify.expected(_conf())["MEMORY_MB"] == {"reserved": 512}  # nova's default


def test_compare_names_inventory_expected_and_actual():
    want = {"PCPU": {"total": 2}, "VCPU": {"total": 1, "allocation_ratio": 4.0},
            "MEMORY_MB": {"reserved": 512}}
    have = {"PCPU": {"total": 1}, "VCPU": {"total": 1, "allocation_ratio": 4.0},
            "MEMORY_MB": {"reserved": 512, "total": 8000}}
    assert [str(m) for m in verify.compare(want, have, 8100)] == \
        ["PCPU total: expected 2, Placement has 1"]
    assert verify.compare(want, {**have, "PCPU": {"total": 2}}, 8100) == []
    far = verify.compare(want, {**have, "PCPU": {"total": 2}}, 16000)
    assert [(m.inventory, m.field) for m in far] == [("MEMORY_MB", "total")]
    missing = verify.compare(want, {"VCPU": have["VCPU"], "MEMORY_MB": have["MEMORY_MB"]},
                             None)
    assert [(m.inventory, m.actual) for m in missing] == [("PCPU", "no inventory")]


def test_log_failure_quotes_novas_own_line():
    log = (
        "2026-11-29 03:38:55.506 136 INFO nova.service [-] Starting compute node\n"
        "2026-11-29 03:39:01.1 136 ERROR nova.compute.manager [req-1 - - - - - -] Error "
        "updating resources for node h1.: nova.exception.Invalid: Invalid '[compute] "
        "cpu_dedicated_set' config: one or more of the configured CPUs is not available. "
        "Available cpuset(s): {0, 1}\n")
    assert register.log_failure(log) == (
        "Invalid '[compute] cpu_dedicated_set' config: one or more of the configured CPUs "
        "is not available. Available cpuset(s): {0, 1}")
    critical = "2026-11-29 03:39:40.541 119 CRITICAL nova [None req-b] Unhandled error: " \
               "amqp.exceptions.AccessRefused: (403) ACCESS_REFUSED\n"
    assert register.log_failure(critical).startswith("CRITICAL nova [None req-b] Unhandled")
    assert register.log_failure("2026 1 WARNING nova.virt [-] deprecated\n") is None


def test_diff_masks_secrets_in_old_and_new_text():
    conf = _conf(reserved_host_memory_mb="512")
    old = conf.reveal().replace("512", "1024")
    state = apply.HostState("debian", "sysv", False, None, True, 0, None, old)
    diff = apply.diff(state, conf, "/etc/nova/nova.conf")
    assert "-reserved_host_memory_mb = 1024" in diff
    assert "+reserved_host_memory_mb = 512" in diff
    assert "s3cr" not in diff
    assert "s3cr%2Fet%21" not in diff
    same = apply.HostState("debian", "sysv", True, "id", True, 0, None, conf.reveal())
    assert apply.plan_file(same, conf, "/etc/nova/nova.conf").files == {}
    change = apply.plan_file(state, conf, "/etc/nova/nova.conf").files["/etc/nova/nova.conf"]
    assert (change.mode, change.group) == ("0600", "root")


def test_durations():
    assert duration_s("24h") == 86400
    assert duration_s("90") == 90
    assert duration_s("30m") == 1800


def test_gate_none_blocks_no_failure_but_still_wants_a_recent_audit(store):
    _scan(store, "a", 1, [("h1", "SSH-001", "fail", "high")])
    assert gate.check(store, "h1", "none", 86400, NOW).passed
    assert not gate.check(store, "h1", "none", 60, NOW).passed  # older than a minute


class _Nova:
    """Nova and Placement as the waits read them: answers given in turn, the last kept."""

    def __init__(self, services=(), inventories=()) -> None:
        self.services, self.inventories_seen = list(services), list(inventories)

    def service(self, host):
        return self.services.pop(0) if len(self.services) > 1 else self.services[0]

    def inventories(self, provider):
        seen = self.inventories_seen
        return seen.pop(0) if len(seen) > 1 else seen[0]


WANT = {"PCPU": {"total": 2}}
INVALID = ("2026 1 ERROR nova.compute.manager [-] nova.exception.Invalid: Invalid "
           "'[compute] cpu_dedicated_set' config: CPU 9 is not available\n")


def test_wait_inventories_until_placement_matches_or_nova_complains():
    api = _Nova(inventories=[{"PCPU": {"total": 1}}, {"PCPU": {"total": 2}}])
    assert verify.wait_inventories(api, "rp", WANT, None, 5, lambda: None) == \
        ({"PCPU": {"total": 2}}, [], None)
    api = _Nova(inventories=[{"PCPU": {"total": 1}}])
    inv, mismatches, line = verify.wait_inventories(api, "rp", WANT, None, 5, lambda: "bad")
    assert (inv, [m.field for m in mismatches], line) == ({"PCPU": {"total": 1}}, ["total"],
                                                          "bad")
    # at the deadline: what Placement had, and no complaint
    inv, mismatches, line = verify.wait_inventories(api, "rp", WANT, None, 0, lambda: None)
    assert (len(mismatches), line) == (1, None)


def test_wait_service_returns_up_fails_on_the_log_or_times_out_with_its_last_line():
    up = {"state": "up", "updated_at": None}
    assert register.wait_service(_Nova([None, up]), "h1", 5, lambda: "", 0) is up
    fatal = "2026 1 CRITICAL nova [-] Unhandled error: AccessRefused\n"
    with pytest.raises(register.RegistrationFailed, match="nova-compute failed: CRITICAL"):
        register.wait_service(_Nova([None]), "h1", 5, lambda: fatal, 0)
    # a configuration complaint is verify's to judge: the wait runs out, quoting the log
    with pytest.raises(register.RegistrationFailed, match="not up within 0 s; its log ends: "
                       ".*CPU 9 is not available") as exc:
        register.wait_service(_Nova([None]), "h1", 0, lambda: INVALID, 0)
    assert "cpu_dedicated_set" in exc.value.log_line
