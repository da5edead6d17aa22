"""The run report as a person sees it: rendered by headless Chromium (Debian's chromium),
screenshot not blank, no script errors, no network; failures first, then the timeline."""

from __future__ import annotations

import re
import subprocess

from PIL import Image

from metalctl.run import NodeRun, RunReport
from metalctl.run.report import to_html
from metalctl.run.report_html import needs_a_person, timeline
from tests.consumers import tool

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--disable-extensions", "--enable-logging=stderr",
         "--v=0"]


def sample() -> RunReport:
    t0 = 1000.0
    ok = NodeRun("https://127.25.1.1/redfish/v1/Systems/1", name="r01-u01", status="ok",
                 steps={s: "ok" for s in ("discover", "enroll", "profile", "provision",
                                          "harden", "audit")},
                 timings={"discover": 2.0, "enroll": 12.0, "profile": 3.0, "provision": 320.0,
                          "harden": 25.0, "audit": 9.0},
                 started={"discover": t0, "enroll": t0 + 2, "profile": t0 + 14,
                          "provision": t0 + 17, "harden": t0 + 337, "audit": t0 + 362},
                 evidence={"profile": {"profile": "nfv-sriov", "plan": "derived",
                                       "bios": "applied", "via": "redfish"},
                           "provision": {"status": "installed", "address": "10.1.2.1",
                                         "timings": {"power": 4.1, "kickstart": 61.0,
                                                     "ssh": 3.2}},
                           "audit": {"scan_id": "s-1", "counts": {"pass": 61, "fail": 0},
                                     "gate": "high", "failing": []}})
    bad = NodeRun("ipmi://127.25.2.1:623", name="r01-u02 <b>", status="failed",
                  stage="audit", steps={"discover": "ok", "enroll": "ok", "profile": "ok",
                                        "provision": "ok", "harden": "ok", "audit": "failed"},
                  timings={"discover": 2.5, "enroll": 11.0, "profile": 2.0,
                           "provision": 301.0, "harden": 30.0, "audit": 8.0},
                  started={"discover": t0, "enroll": t0 + 2.5, "profile": t0 + 14,
                           "provision": t0 + 16, "harden": t0 + 317, "audit": t0 + 347},
                  reason="audit gate high: LVT-002, SSH-003 failed <script>x</script>",
                  evidence={"audit": {"scan_id": "s-2", "counts": {"pass": 59, "fail": 2},
                                      "gate": "high", "failing": ["LVT-002", "SSH-003"]}})
    late = NodeRun("ipmi://127.25.2.2:623", name="r01-u03", status="failed", stage="enroll",
                   steps={"discover": "ok", "enroll": "failed"},
                   timings={"discover": 2.2, "enroll": 1.0},
                   started={"discover": t0, "enroll": t0 + 3},
                   reason="enroll: Ironic unavailable")
    plan = {"profile": "nfv-sriov", "plan": {
        "profile": "nfv-sriov", "host_cpus": "0-1,32-33", "isolated_cpus": "2-31,34-63",
        "pmd_cpus": "", "offline_cpus": "", "hugepage_size": "1G",
        "numa": [{"node": 0, "hugepages": 48, "memory_mib": 65536,
                  "guest_cpus": list(range(2, 16))},
                 {"node": 1, "hugepages": 48, "memory_mib": 65536,
                  "guest_cpus": list(range(16, 32))}],
        "kernel_args": ["default_hugepagesz=1G", "hugepagesz=1G", "hugepages=96",
                        "isolcpus=managed_irq,domain,2-31,34-63"],
        "nova": {"compute": {"cpu_dedicated_set": "2-31,34-63", "cpu_shared_set": "0-1"},
                 "DEFAULT": {"reserved_host_memory_mib": 4096}}}}
    return RunReport(rack="rack-a", started_at="2026-12-06T02:00:00+00:00", duration_s=371.0,
                     until="audit", budget="10%", nodes=[ok, bad, late],
                     plans={ok.key: plan})


def test_failures_come_first_with_what_to_do_next():
    report = sample()
    needs = needs_a_person(report)
    assert [(n["node"], n["stage"]) for n in needs] == [("r01-u02 <b>", "audit"),
                                                        ("r01-u03", "enroll")]
    assert "metalctl harden --rule ID" in needs[0]["next"]
    assert needs[1]["resume"] == "metalctl run RACK_FILE --from enroll --only r01-u03"
    # a name with a space or markup stays one shell word
    assert needs[0]["resume"].endswith("--only 'r01-u02 <b>'")
    page = to_html(report)
    assert page.index("Needs a person") < page.index("Timeline") < page.index("Nodes and")
    assert "<script>x" not in page
    assert "&lt;script&gt;x" in page
    assert "<pre>" not in page  # evidence as tables, not raw JSON
    # the plan as tables: CPU sets, hugepages per NUMA node, kernel arguments, nova.conf
    assert "<th>isolated</th><td>2-31,34-63" in page
    assert "isolcpus=managed_irq,domain,2-31,34-63" in page
    assert "[compute] cpu_dedicated_set" in page
    bars = timeline(report)["bars"]
    assert len(bars) == 6 + 6 + 2


def test_chromium_renders_the_report(tmp_path):
    page = tmp_path / "run.html"
    page.write_text(to_html(sample()))
    chromium = tool("chromium")
    shot = tmp_path / "shot.png"
    common = [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
              "--window-size=1280,1400"]
    proc = subprocess.run([*common, f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 1400)
    colours = image.getcolors(maxcolors=1_000_000)
    assert colours is not None
    assert len(colours) > 50, "screenshot is blank"
    # the timeline's bars are drawn: the ok green and the failed red are on screen
    seen = {c for _n, c in colours}
    assert (0x2E, 0x7D, 0x32) in seen
    assert (0xC6, 0x28, 0x28) in seen
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120, check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<svg" in dom.stdout
    assert "Needs a person" in dom.stdout
    log = proc.stderr + dom.stderr
    assert not re.search(r"Uncaught|CONSOLE\(\d+\).*[Ee]rror", log), log[-2000:]
