"""Peer text reaches the terminal as plain text, and no revealed secret reaches output."""

from __future__ import annotations

import io
import json

from metalctl.credentials import Secret
from metalctl.logredact import scrub_text
from metalctl.output.render import render

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J:-1: [bold red]BMC[/] \x9b31m"


class Tty(io.StringIO):
    def isatty(self) -> bool:  # a real terminal: rich would emit colours, emoji, markup
        return True


def table(rows) -> str:
    out = Tty()
    render(rows, "table", columns=[("name", "name"), ("status", "status")], out=out)
    return out.getvalue()


def test_escape_sequences_markup_and_emoji_codes_are_shown_literally():
    text = table([{"name": HOSTILE, "status": "ok"}])
    assert "\x1b]0;" not in text
    assert "\x1b[2J" not in text
    assert "\x9b" not in text
    assert "\N{THUMBS DOWN SIGN}" not in text
    assert ":-1:" in text
    assert "[bold red]BMC[/]" in text  # the markup itself, as text


def test_json_keeps_the_exact_peer_text():
    out = io.StringIO()
    render([{"name": HOSTILE}], "json", columns=[], out=out)
    assert json.loads(out.getvalue())[0]["name"] == HOSTILE


def test_a_secret_revealed_to_a_peer_never_reaches_any_output_format():
    password = Secret("echoed-by-peer-Pw1")
    password.reveal()  # handed to a peer, which echoed it into an error
    row = {"name": "n1", "status": "failed", "error": "400: bad body echoed-by-peer-Pw1"}
    for fmt in ("json", "yaml"):
        out = io.StringIO()
        render([row], fmt, columns=[], out=out)
        assert "echoed-by-peer-Pw1" not in out.getvalue()
    assert "echoed-by-peer-Pw1" not in table([row])


def test_credential_fields_in_peer_text_are_masked_whatever_their_value():
    text = scrub_text('{"driver_info": {"ipmi_kg_key": "0123456789abcdef", '
                      '"ipmi_password": "pw", "ipmi_username": "admin"}} X-Auth-Token: t0k')
    assert "0123456789abcdef" not in text
    assert '"ipmi_password": "***"' in text
    assert "admin" in text  # what is not a credential stays readable
    assert "t0k" not in text
