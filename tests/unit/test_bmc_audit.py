"""The BMC audit split in two: the reader (I/O, here against fake boundaries) and the pure
evaluation. The rules' pass/fail cases are in tests/data/rule-cases/bmc.yaml
(test_rule_cases); these are the properties that hold for every rule."""

from __future__ import annotations

import ast
import itertools
from dataclasses import replace
from pathlib import Path

import bmccases
import pytest
import rulecases

from metalctl.audit import bmc as bmc_audit
from metalctl.audit import bmc_eval, bmc_read
from metalctl.audit.bmc_facts import BIOS, TLS, UNAUTHENTICATED, WRONG_CREDENTIALS, BmcFacts
from metalctl.audit.model import ERROR, FAIL, NOTAPPLICABLE, NOTCHECKED, PASS
from metalctl.budget import Budget
from metalctl.errors import BmcAuthFailed, BmcTLSError, BmcUnreachable
from metalctl.model.bios import BiosState
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.rules import catalogue
from metalctl.rules.kinds import bmc as bmc_kind
from metalctl.store import Store

ROOT = Path(__file__).resolve().parents[2]
RULES = [r for r in catalogue.load() if "bmc" in r.platforms]
BUDGET = Budget(connect_timeout_s=1, read_timeout_s=1)
SITE = {"bmc": {"min_bios_version": {"": "1.0"}}}  # "" matches every manufacturer


def test_every_test_of_the_kind_has_a_judge():
    assert set(bmc_eval.TESTS) == set(bmc_kind.TESTS)
    assert {r.check["test"] for r in RULES} <= set(bmc_eval.TESTS)


def test_the_evaluation_does_no_io():
    """bmc_eval imports nothing that talks to a BMC, a store or the network."""
    tree = ast.parse((ROOT / "metalctl/audit/bmc_eval.py").read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    io = {n for n in names if n.split(".")[0] in ("requests", "sushy", "socket", "pyghmi",
                                                  "subprocess", "urllib3", "ssl")
          or n.startswith(("metalctl.bmc", "metalctl.store", "metalctl.audit.bmc_read"))}
    assert not io, io


FACT_SETS = {
    "nothing read": {},
    "every read failed": {"errors": {f: "BMC unreachable: ConnectTimeout"
                                     for f in (BIOS, UNAUTHENTICATED, WRONG_CREDENTIALS,
                                               TLS)}},
    "empty answers": {"system": {"Manufacturer": "Contoso"}, "bios": {"Attributes": {}},
                      "probes": {f: {} for f in (UNAUTHENTICATED, WRONG_CREDENTIALS, TLS)}},
}


@pytest.mark.parametrize(("rule", "protocol", "shape", "intent"), [
    pytest.param(r, p, s, i, id=f"{r.id}-{p}-{s}-{'intent' if i else 'none'}")
    for r, p, s, i in itertools.product(RULES, ("redfish", "ipmi", None), FACT_SETS,
                                        (True, False))])
def test_nothing_to_judge_is_never_a_pass(rule, protocol, shape, intent):
    doc = {**bmccases.BASE, "protocol": protocol, **FACT_SETS[shape]}
    if intent:
        doc["intent"] = {"profile": "p", "attributes": {"ProcVtd": "Enabled"}}
    [result] = bmc_eval.evaluate(BmcFacts.from_dict(doc), [rule], SITE)
    assert result.status in (ERROR, NOTCHECKED, NOTAPPLICABLE), (result.status,
                                                                 result.evidence)
    assert result.remediation is None


@pytest.mark.parametrize(("rid", "side", "case"), [
    pytest.param(rid, side, case, id=f"{rid}-{side}-{i}")
    for rid, sides in sorted(rulecases.load().items())
    if rid.startswith("BMC-") for side, cases in sorted(sides.items())
    for i, case in enumerate(cases)])
def test_a_case_written_out_and_read_back_is_judged_the_same(rid, side, case):
    """The fixture format is the reader's own: to_dict/from_dict lose nothing judged."""
    [rule] = [r for r in RULES if r.id == rid]
    facts = bmccases.facts_of(case)
    again = BmcFacts.from_dict(facts.to_dict())
    site = case.get("site") or {}
    assert bmc_eval.evaluate(again, [rule], site) == bmc_eval.evaluate(facts, [rule], site)


@pytest.mark.parametrize(("text", "key"), [
    ("1.13.2", (1, 13, 2)), ("U30 v2.76 (02/09/2023)", (2, 76)),
    ("P79 v1.45 (12/06/2017)", (1, 45)), ("AFE120G-3.10", (3, 10)), ("1.4a", (1, 4)),
    ("F20", (20,)), ("2.10", (2, 10)), ("U46", (46,)),
    ("", None), (None, None), ("N/A", None), ("latest", None), ("A1 B2", None)])
def test_version_key(text, key):
    assert bmc_eval.version_key(text) == key


def test_numbers_compare_as_numbers():
    assert bmc_eval.version_key("2.10") > bmc_eval.version_key("2.9")


def test_unknown_protocol_and_unknown_test_are_errors_not_silence():
    facts = BmcFacts(label="n", source="x", protocol=None)
    assert {r.status for r in bmc_eval.evaluate(facts, RULES, SITE)} == {ERROR}
    odd = replace(RULES[0], check={"kind": "bmc", "test": "x"})
    [r] = bmc_eval.evaluate(BmcFacts(label="n", source="x", protocol="redfish"), [odd])
    assert r.status == ERROR
    assert "no test 'x'" in r.evidence.detail


# the reader, against fake boundaries ------------------------------------------------

REDFISH = DiscoveryRecord("192.0.2.20", 443, Protocol.REDFISH, Status.OK, scheme="https",
                          system_id="/redfish/v1/Systems/1", manufacturer="Contoso",
                          bios_version="P79 v1.45 (12/06/2017)")
IPMI = DiscoveryRecord("192.0.2.21", 623, Protocol.IPMI, Status.OK)


class FakeBios:
    """RedfishBios as the reader uses it: opened once, its state read, closed."""

    opened: list[str] = []

    def __init__(self, record, creds, verify, budget):
        FakeBios.opened.append(record.address)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def state(self):
        return BiosState(current={"ProcVtd": "Disabled"}, pending={})


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "s.db") as s:
        yield s


@pytest.fixture
def bmc(monkeypatch):
    """The boundary modules faked: each request recorded, answers set per test."""
    calls: list[tuple[str, object]] = []
    answers: dict[str, object] = {}

    def status_of(base_url, address, path, verify, auth, budget):
        calls.append((path, auth and auth[0]))
        ans = answers.get("tls" if path == "/redfish/v1/" else
                          "bogus" if auth else "anonymous", 401)
        if isinstance(ans, Exception):
            raise ans
        return ans

    monkeypatch.setattr(bmc_read.checks, "status_of", status_of)
    monkeypatch.setattr(bmc_read, "RedfishBios", FakeBios)
    FakeBios.opened = []
    return calls, answers


def node(store, rec, intent=None):
    key = rec.key
    store.save_discovered(rec)
    if intent:
        store.put_data(key, "plan", {"profile": "compute-general",
                                     "bios": {"attributes": intent}})
    return next(n for n in store.nodes() if n["key"] == key)


def test_reader_asks_each_fact_once_and_the_audit_judges_it(store, bmc):
    calls, _ = bmc
    row = node(store, REDFISH, {"ProcVtd": "Enabled"})
    audit = bmc_audit.check_node(store, row, RULES + RULES, object(), True,
                                 {"bmc": {"min_bios_version": {"contoso": "1.50"}}}, BUDGET)
    assert audit.kind == "bmc"
    assert len(audit.results) == 2 * len(RULES)
    assert [p for p, _ in calls] == ["/redfish/v1/Systems", "/redfish/v1/Systems",
                                     "/redfish/v1/"]
    assert calls[1][1] == "metalctl-audit"  # a random user, never the node's
    assert FakeBios.opened == ["192.0.2.20"]
    got = {r.rule: r.status for r in audit.results}
    assert got == {"BMC-001": FAIL, "BMC-002": FAIL, "BMC-003": PASS, "BMC-004": PASS,
                   "BMC-005": PASS}


def test_reader_reads_only_what_the_rules_need(store, bmc):
    calls, _ = bmc
    row = node(store, REDFISH)  # no profile: no BIOS login
    facts = bmc_read.read(store, row, RULES, object(), True, BUDGET)
    assert FakeBios.opened == []
    assert facts.bios is None
    assert facts.intent is None
    calls.clear()
    facts = bmc_read.read(store, row, [r for r in RULES if r.id == "BMC-002"], None, True,
                          BUDGET)
    assert calls == []
    assert facts.system == {"Manufacturer": "Contoso", "BiosVersion": "P79 v1.45 (12/06/2017)"}


def test_reader_without_credentials_leaves_the_bios_unread(store, bmc):
    row = node(store, REDFISH, {"ProcVtd": "Enabled"})
    facts = bmc_read.read(store, row, RULES, None, True, BUDGET)
    assert FakeBios.opened == []
    assert facts.unread == {BIOS: "no credentials to read the BIOS"}
    [r] = bmc_eval.evaluate(facts, [RULES[0]])
    assert r.status == NOTCHECKED


def test_reader_records_each_failure_against_its_fact(store, bmc):
    _, answers = bmc
    answers.update(anonymous=BmcUnreachable(address="192.0.2.20", reason="ConnectTimeout"),
                   tls=BmcTLSError(address="192.0.2.20", reason="certificate not verified"))
    row = node(store, REDFISH)
    facts = bmc_read.read(store, row, RULES, None, True, BUDGET)
    assert facts.errors == {UNAUTHENTICATED: "BMC unreachable: ConnectTimeout"}
    assert facts.probes[WRONG_CREDENTIALS].http_status == 401
    assert facts.probes[TLS].verified is False
    got = {r.rule: r.status for r in bmc_eval.evaluate(facts, RULES)}
    assert (got["BMC-003"], got["BMC-004"], got["BMC-005"]) == (ERROR, PASS, FAIL)


def test_reader_on_ipmi_logs_in_as_a_stranger_and_logs_out(store, monkeypatch):
    logged_out = []

    class Session:
        def logout(self):
            logged_out.append(True)

    class Cmd:
        ipmi_session = Session()

    def login(address, port, creds, budget):
        assert creds.entries[0].username == "metalctl-audit"
        return Cmd(), creds.entries[0]

    monkeypatch.setattr(bmc_read.ipmi, "login", login)
    row = node(store, IPMI)
    facts = bmc_read.read(store, row, RULES, None, True, BUDGET)
    assert facts.probes == {WRONG_CREDENTIALS: bmc_read.Probe(refused=False)}
    assert logged_out == [True]

    def refuse(address, port, creds, budget):
        raise BmcAuthFailed(address=address, reason="RMCP+ authentication rejected")

    monkeypatch.setattr(bmc_read.ipmi, "login", refuse)
    facts = bmc_read.read(store, row, RULES, None, True, BUDGET)
    got = {r.rule: r.status for r in bmc_eval.evaluate(facts, RULES, SITE)}
    assert got == {"BMC-001": NOTAPPLICABLE, "BMC-002": NOTAPPLICABLE,
                   "BMC-003": NOTAPPLICABLE, "BMC-004": PASS, "BMC-005": NOTAPPLICABLE}
