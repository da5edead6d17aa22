import logging
import os
import pickle

import pytest

from metalctl.credentials import Secret, resolve
from metalctl.errors import CredentialsError
from metalctl.logredact import RedactingFilter


def write(path, text, mode=0o600):
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_secret_never_renders():
    s = Secret("hunter2-marker")
    for text in (str(s), repr(s), f"{s}", f"{s!r}", f"{s}", str([s]), str({"p": s})):
        assert "hunter2" not in text
    assert s.reveal() == "hunter2-marker"
    with pytest.raises(TypeError):
        pickle.dumps(s)


def test_resolve_from_file_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ROOT_PW", "from-env")
    f = write(tmp_path / "c.yaml", "rack-a:\n  - {username: admin, password: one}\n"
                                   "  - {username: root, password_env: ROOT_PW}\n")
    cs = resolve("rack-a", f, interactive=False)
    assert [c.username for c in cs.entries] == ["admin", "root"]
    assert cs.entries[1].password.reveal() == "from-env"


def test_world_readable_file_refused(tmp_path):
    f = write(tmp_path / "c.yaml", "rack-a: [{username: a, password: b}]\n", mode=0o644)
    with pytest.raises(CredentialsError, match="chmod 600"):
        resolve("rack-a", f, interactive=False)


def test_unknown_key_names_field_without_echoing_password(tmp_path):
    f = write(tmp_path / "c.yaml", "rack-a: [{username: a, password: s3cr3t-x, pasword: y}]\n")
    with pytest.raises(CredentialsError) as exc:
        resolve("rack-a", f, interactive=False)
    assert "rack-a[0].pasword" in str(exc.value)
    assert "s3cr3t-x" not in str(exc.value)


def test_environment_source(monkeypatch, tmp_path):
    monkeypatch.setenv("METALCTL_CRED_RACK_B_USERNAME", "admin")
    monkeypatch.setenv("METALCTL_CRED_RACK_B_PASSWORD", "pw")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("METALCTL_CREDENTIALS_FILE", raising=False)
    cs = resolve("rack-b", interactive=False)
    assert cs.entries[0].username == "admin"


def test_missing_set_is_an_input_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("METALCTL_CREDENTIALS_FILE", raising=False)
    with pytest.raises(CredentialsError, match="no such credential set"):
        resolve("nope", interactive=False)


def test_redacting_filter_scrubs_third_party_logs(caplog):
    flt = RedactingFilter()
    flt.add([Secret("very-secret-pw")])
    logger = logging.getLogger("keystoneauth.session.test")
    caplog.handler.addFilter(flt)
    with caplog.at_level(logging.DEBUG):
        logger.debug("REQ: %s", '{"driver_info": {"redfish_password": "very-secret-pw"}}')
    assert "very-secret-pw" not in caplog.text
    assert "***" in caplog.text
