"""Peer text is untrusted: credentials masked whatever the peer echoes, no terminal control,
no rich markup, in tables, progress lines and logs; JSON/YAML stay exact."""

import io
import json
import logging

import pytest
import yaml
from rich.console import Console
from rich.progress import Progress

from metalctl import discover, logredact
from metalctl.audit import formats
from metalctl.audit.model import HostAudit, Report
from metalctl.credentials import Secret
from metalctl.model.hardware import Hardware, NicFacts
from metalctl.model.node import DiscoveryRecord, Protocol, Status
from metalctl.output import render


@pytest.mark.parametrize(("text", "secret"), [
    ('{"driver_info": {"ipmi_kg_key": "0a1b2c3d", "ipmi_address": "10.0.0.1"}}', "0a1b2c3d"),
    ("{'redfish_password': 'p\\'w0rd'}", "w0rd"),
    ('[{"op": "add", "path": "/driver_info/ipmi_password", "value": "s3cr3t"}]', "s3cr3t"),
    ('[{"value": "s3cr3t", "path": "/driver_info/ipmi_password", "op": "add"}]', "s3cr3t"),
    ("X-Auth-Token: 0123456789abcdef", "0123456789abcdef"),
    ("login failed: password=letmein&user=root", "letmein"),
    ('"client_secret" : "abc.def"', "abc.def"),
])
def test_credential_fields_are_masked_whatever_the_peer_sends(text, secret):
    out = logredact.scrub(text)
    assert secret not in out
    assert "***" in out


@pytest.fixture(autouse=True)
def _no_secrets_from_other_tests():
    """Secrets revealed by earlier tests in this process (some use 'admin' as a password)
    would be masked here too: each test starts from none."""
    from metalctl import credentials

    saved = set(credentials._REVEALED)
    credentials._REVEALED.clear()
    yield
    credentials._REVEALED.update(saved)


def test_registered_values_are_masked_anywhere_and_plain_text_is_kept():
    logredact.register([Secret("Tr0ub4dor&3"), "kg-0011223344"])
    out = logredact.scrub("echo: Tr0ub4dor&3 / kg-0011223344; ipmi_address 10.0.0.1")
    assert out == "echo: *** / ***; ipmi_address 10.0.0.1"
    assert logredact.scrub("no password given for user admin") == \
        "no password given for user admin"


def test_log_records_are_masked_and_defanged(caplog):
    flt = logredact.RedactingFilter()
    caplog.handler.addFilter(flt)
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("ironicclient.test").debug(
            "RESP BODY: %s", '{"ipmi_kg_key": "ffeeddcc", "name": "\x1b]0;pwned\x07x\x1b[2J"}')
    assert "ffeeddcc" not in caplog.text
    assert "\x1b" not in caplog.text
    assert "\x07" not in caplog.text
    assert "\\x1b]0;pwned\\x07x\\x1b[2J" in caplog.text


HOSTILE = {"model": "[bold red]PWNED[/] :-1: \x1b]0;title\x07\x1b[2J", "status": "ok",
           "error": "[link=http://evil.example]click[/link]"}


def test_a_table_shows_peer_text_as_written_without_markup_emoji_or_controls():
    out = io.StringIO()
    render.render([HOSTILE], "table", columns=[("model", "model"), ("status", "status"),
                                               ("error", "error")], out=out)
    text = out.getvalue()
    assert "[bold red]PWNED[/] :-1:" in text  # markup and emoji code kept as text
    assert "\U0001f44e" not in text  # the thumbs-down emoji
    assert "\x1b" not in text
    assert "\x07" not in text
    assert "\\x1b]0;title\\x07\\x1b[2J" in text
    assert "[link=http://evil.example]click[/link]" in text


def test_json_and_yaml_stay_exact():
    out = io.StringIO()
    render.render([HOSTILE], "json", columns=[], out=out)
    assert json.loads(out.getvalue()) == [HOSTILE]
    out = io.StringIO()
    render.render([HOSTILE], "yaml", columns=[], out=out)
    assert yaml.safe_load(out.getvalue()) == [HOSTILE]


def test_progress_column_renders_peer_text_plain():
    progress = Progress(render.PeerTextColumn("last"), console=Console(file=io.StringIO()))
    task = progress.add_task("x", total=1, last="[red]n1[/] :-1: \x1b[2J")
    cell = render.PeerTextColumn("last").render(progress.tasks[task])
    assert cell.plain == "[red]n1[/] :-1: \\x1b[2J"
    assert not cell.spans
    assert render.markup_safe("[b]x[/b]\x1b") == "\\[b]x\\[/b]\\x1b"


def test_audit_html_hosts_table_has_one_error_column_and_audit_table_is_plain():
    report = Report(scan_id="s1", started_at="2026-01-01T00:00:00", duration_s=1.0, hosts=[
        HostAudit(host="h1", error="ssh: \x1b[31m[bold]refused[/] :-1:", results=[]),
    ], rules={})
    page = formats.html_report(report)
    hosts_header = page.split("<h2>Hosts</h2>")[1].split("</tr>")[0]
    assert hosts_header.count("<th>error</th>") == 1
    out = io.StringIO()
    formats.table(report, out)
    assert "[bold]refused[/] :-1:" in out.getvalue()
    assert "\x1b" not in out.getvalue()


def test_a_bmc_that_sends_the_password_back_in_any_string_is_masked():
    logredact.register([Secret("probe-pw-5150")])
    rec = DiscoveryRecord(
        "10.0.0.9", 443, Protocol.REDFISH, Status.AUTH_FAILED, scheme="https",
        error='HTTP 400: {"UserName": "admin", "Password": "whatever-it-was"}',
        model="X probe-pw-5150", bmc_username="probe-pw-5150",
        hardware=Hardware(nics=(NicFacts("b4:96:91:00:00:01", name="eth probe-pw-5150"),)))
    clean = discover.scrubbed(rec)
    assert clean.status is Status.AUTH_FAILED
    assert clean.protocol is Protocol.REDFISH
    assert clean.model == "X ***"
    assert clean.hardware.nics[0].name == "eth ***"
    assert clean.hardware.nics[0].mac == "b4:96:91:00:00:01"
    assert "whatever-it-was" not in clean.error
    assert clean.key == rec.key
    assert clean.bmc_username == "probe-pw-5150"  # metalctl's own field, not the peer's
