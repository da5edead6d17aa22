"""The run report (JSON, self-contained HTML) and the live view's plain lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

from rich.console import Console

from metalctl.run import NodeRun, RunEvent, RunReport
from metalctl.run.live import LiveView


def report() -> RunReport:
    ok = NodeRun("https://127.25.1.1/redfish/v1/Systems/1", name="r01-u01", status="ok",
                 steps={"discover": "ok", "enroll": "ok", "profile": "skipped"},
                 timings={"discover": 0.5, "enroll": 12.25},
                 evidence={"audit": {"counts": {"pass": 40, "fail": 1}, "gate": "high",
                                     "scan_id": "0123abcd", "report": "audit-0123abcd.html"}})
    bad = NodeRun("ipmi://127.25.2.1:623", name="<script>alert(1)</script>", status="failed",
                  steps={"discover": "ok", "enroll": "failed"}, timings={"enroll": 3.0},
                  reason="enroll: BMC credentials rejected & <b>")
    return RunReport(rack="r25", started_at="2026-11-29T03:00:00+00:00", duration_s=15.8,
                     until="handoff", budget="10%", nodes=[ok, bad])


def test_json_and_html_reports(tmp_path):
    files = report().write(tmp_path)
    data = json.loads(Path(files["json"]).read_text())
    assert data["schema"] == "metalctl-run/1"
    assert data["counts"] == {"ok": 1, "failed": 1}
    first = data["nodes"][0]
    assert first["timings_s"] == {"discover": 0.5, "enroll": 12.25}
    assert first["total_s"] == 12.75
    assert first["evidence"]["audit"]["counts"]["fail"] == 1
    html = Path(files["html"]).read_text()
    assert "<script>" not in html  # hostile names are escaped; the page has no scripts
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "BMC credentials rejected &amp; &lt;b&gt;" in html
    assert "12.2 s" in html or "12.3 s" in html
    # the audit's own page, written beside the run's, is one click away
    assert '<a href="audit-0123abcd.html">audit report (scan 0123abcd)</a>' in html
    assert "<link" not in html  # self-contained: nothing fetched
    assert "src=" not in html


def test_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    view = LiveView(Console(file=io.StringIO()), out)
    view(RunEvent("start", "k1", "enroll", "running", name="r01-u01"))
    view(RunEvent("end", "k1", "enroll", "failed", "no such MAC", 1.25, "r01-u01"))
    view(RunEvent("stopped", reason="failure budget spent"))
    assert out.getvalue().splitlines() == ["r01-u01 enroll failed 1.2s: no such MAC",
                                           "run: failure budget spent"]
    table = view.table()
    assert table.row_count == 1


def test_ctrl_c_writes_what_was_seen_and_propagates(tmp_path, monkeypatch):
    import pytest

    from metalctl.model.node import DiscoveryRecord, Protocol, Status
    from metalctl.run import Adapter, RunOptions, StepResult, load_rack, run
    from metalctl.store import Store

    rec = DiscoveryRecord(address="127.25.9.1", port=443, protocol=Protocol.REDFISH,
                          status=Status.OK, scheme="https", system_id="/redfish/v1/Systems/1")

    def source(keys, emit):
        store.save_discovered(rec)
        emit(StepResult(rec.key, True))

    def interrupt(event):
        if event.kind == "end":
            raise KeyboardInterrupt

    monkeypatch.setenv("METALCTL_LAB_DIR", str(tmp_path))
    from tests.unit.test_run_rackfile import lab_files  # the paths the lab rack names

    lab_files(tmp_path)
    monkeypatch.setenv("METALCTL_BOOT_SERVE", "10.203.0.1:8080")
    monkeypatch.setenv("METALCTL_DNSMASQ_CONF", str(tmp_path / "provnet-203" / "dnsmasq.conf"))
    rack = load_rack(Path(__file__).resolve().parents[2] / "inventory" / "rack.lab.yaml")
    with Store(tmp_path / "s.db").open() as store:
        opts = RunOptions(adapters=[Adapter("discover", source)], report_dir=tmp_path / "r")
        with pytest.raises(KeyboardInterrupt):
            run(rack, opts, store=store, on_event=interrupt)
    [written] = (tmp_path / "r").glob("*.json")
    data = json.loads(written.read_text())
    assert data["stopped"] == "interrupted; re-run to resume"
    assert [n["steps"] for n in data["nodes"]] == [{"discover": "ok"}]
