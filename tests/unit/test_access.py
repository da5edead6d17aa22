"""The one way a verb and a run reach their peers: credential sets and Ironic."""

from __future__ import annotations

import os

import pytest

from metalctl import access
from metalctl.errors import CredentialsError
from metalctl.ironic import Ironic
from metalctl.logredact import scrub


def test_a_resolved_set_is_masked_in_any_text_before_it_is_revealed(tmp_path):
    path = tmp_path / "credentials.yaml"
    path.write_text("rack-a:\n  - {username: admin, password: never-revealed-4711}\n")
    os.chmod(path, 0o600)
    cset = access.credential_set("rack-a", path)
    assert [c.username for c in cset.entries] == ["admin"]
    # nothing has called reveal(): the mask comes from the registration alone
    assert scrub("Ironic echoed never-revealed-4711 back") == "Ironic echoed *** back"


def test_a_set_found_nowhere_is_asked_for_only_through_the_callers_prompt(tmp_path):
    path = tmp_path / "credentials.yaml"
    path.write_text("other: [{username: a, password: bcd}]\n")
    os.chmod(path, 0o600)
    with pytest.raises(CredentialsError, match="no such credential set"):
        access.credential_set("rack-a", path)


@pytest.fixture
def offline(monkeypatch):
    """Ironic.connect without a peer: the configuration it would connect with."""
    monkeypatch.setattr(Ironic, "connect", lambda self: self)


def test_an_ironic_url_wins_over_a_cloud_name(offline):
    got = access.ironic("http://127.0.0.1:6385", "lab")
    assert (got.config.url, got.config.cloud) == ("http://127.0.0.1:6385", None)


def test_without_a_url_the_cloud_name_is_used(offline):
    got = access.ironic(None, "lab")
    assert (got.config.url, got.config.cloud) == (None, "lab")
