"""Options refused before any probe, usage errors exit 3, paths kept inside their
directories, strings never split into lists, and one line per error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import metalctl.discover as discover_stage
from metalctl import credentials
from metalctl.errors import CredentialsError, InputError, ProfileError
from metalctl.hosts import load_hosts, load_site
from metalctl.pki import SitePKI
from metalctl.profile.library import ProfileLibrary
from tests.unit import clirun


class Probed(BaseException):
    """The discover stage was reached."""


@pytest.fixture
def run(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("METALCTL_CREDENTIALS_FILE", raising=False)
    monkeypatch.delenv("METALCTL_CA_BUNDLE", raising=False)

    def probe(*args, **kwargs):
        raise Probed

    monkeypatch.setattr(discover_stage, "discover", probe)
    creds = tmp_path / "creds.yaml"
    creds.write_text("lab: [{username: admin, password: pw}]\n")
    creds.chmod(0o600)

    call = clirun.runner(monkeypatch, Probed, "probed")
    call.creds = creds  # type: ignore[attr-defined]
    with clirun.logging_restored():
        yield call


def discover(run, *extra: str) -> list[str]:
    return ["discover", "127.0.0.1", "-c", "lab", "--credentials-file", str(run.creds),
            "--no-store", *extra]


@pytest.mark.parametrize(("option", "value"), [
    ("--concurrency", "0"), ("--concurrency", "-4"), ("--connect-timeout", "nan"),
    ("--connect-timeout", "-1"), ("--read-timeout", "inf"), ("--read-timeout", "0"),
    ("--ipmi-port", "0"), ("--ipmi-port", "65536"), ("--redfish-port", "70000"),
    ("--max-addresses", "0"), ("--ca-bundle", "/nonexistent/ca.pem"),
])
def test_bad_options_refused_before_any_probe(run, option, value):
    code, out = run(discover(run, option, value))
    assert code == 3
    assert option in out
    assert "Traceback" not in out


def test_good_options_reach_the_probe(run, tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    code, _ = run(discover(run, "--concurrency", "1", "--connect-timeout", "0.5",
                           "--ipmi-port", "623", "--ca-bundle", str(ca)))
    assert code == "probed"


def test_log_file_in_a_missing_directory(run, tmp_path):
    code, out = run(["--log-file", str(tmp_path / "no" / "x.log"), *discover(run)])
    assert code == 3
    assert "--log-file" in out


def test_usage_errors_exit_3_not_2(run):
    for argv in (["discover"], ["no-such-verb"], ["discover", "10.0.0.1", "-c", "x",
                                                   "--concurrency", "many"]):
        code, out = run(argv)
        assert code == 3, argv
        assert "error:" in out


def test_malformed_ipv6_target_is_refused_not_probed(run):
    code, out = run(["discover", "[fd00::1", "-c", "lab", "--credentials-file",
                     str(run.creds), "--no-store"])
    assert code == 3
    assert "targets[0]" in out


def test_log_lines_print_their_level_once(run):
    code, out = run(discover(run, "--concurrency", "0"))
    assert code == 3
    assert out.count("ERROR") == 1
    assert "ERROR:metalctl" not in out


def test_unexpected_error_is_one_line_and_debug_shows_the_traceback(run, monkeypatch):
    def boom(*args, **kwargs):
        raise ZeroDivisionError("unexpected")

    monkeypatch.setattr(discover_stage, "discover", boom)
    code, out = run(discover(run))
    assert code == 1
    assert "internal error: ZeroDivisionError: unexpected" in out
    assert "Traceback" not in out
    code, out = run(["--debug", *discover(run)])
    assert code == 1
    assert "Traceback" in out


def test_oserror_on_a_user_path_is_an_input_error(run, monkeypatch, tmp_path):
    def missing(*args, **kwargs):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "gone"))

    monkeypatch.setattr(discover_stage, "discover", missing)
    code, out = run(discover(run))
    assert code == 3
    assert "gone: No such file or directory" in out


# --- paths ------------------------------------------------------------------------------

def test_pki_issue_never_writes_outside_the_pki_directory(run, tmp_path):
    pki_dir = tmp_path / "pki"
    assert run(["pki", "init", "--pki-dir", str(pki_dir)])[0] == 0
    before = set(tmp_path.rglob("*"))
    for host in ("../../x", "../x", "a/b", ".hidden", "..", "x/../../y"):
        code, out = run(["pki", "issue", host, "--pki-dir", str(pki_dir)])
        assert code == 3, host
        assert "not a host name" in out
    assert set(tmp_path.rglob("*")) == before
    assert run(["pki", "issue", "compute-01", "--pki-dir", str(pki_dir),
                "--name", "compute-01.example"])[0] == 0


def test_pki_names_as_one_string_are_refused_not_split(tmp_path):
    pki = SitePKI(tmp_path / "pki")
    pki.init()
    with pytest.raises(InputError, match="names.*list of strings"):
        pki.issue("compute-01", "a.example", [])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="not a DNS name"):
        pki.issue("compute-01", ["../evil"], [])
    assert not (tmp_path / "pki" / "hosts" / "compute-01").exists()


@pytest.mark.parametrize("parent", ["../../..", "../etc/passwd", "/etc/hostname", "a/b"])
def test_extends_never_leaves_the_profile_directories(tmp_path, parent):
    (tmp_path / "p.yaml").write_text(f"extends: {parent!r}\n")
    with pytest.raises(ProfileError) as exc:
        ProfileLibrary([tmp_path]).load("p")
    assert exc.value.field == "extends"
    assert "not a profile name" in exc.value.reason


# --- strings for lists, misspelt keys ----------------------------------------------------

@pytest.mark.parametrize(("loader", "text", "field", "line", "reason"), [
    # a string where a list is wanted
    (load_hosts, "hosts:\n  - name: c1\n    ssh: root@10.0.0.1\n    names: c1.example\n",
     "hosts[0].names", 4, "expected array, got a string"),
    # misspelt keys: file, field and line, and the key meant
    (load_hosts, "hosts:\n  - name: c1\n    ssh: root@10.0.0.1\n    mgmt_adress: 10.9.0.1\n",
     "hosts[0].mgmt_adress", 4, "unknown key; did you mean 'mgmt_address'?"),
    (load_site, "lsm: auto\nlibvirt:\n  tls_priorty: NORMAL\n",
     "libvirt.tls_priorty", 3, "unknown key; did you mean 'tls_priority'?"),
    # a bad SSH spec is an input error of its field
    (load_hosts, "hosts:\n  - name: c1\n    ssh: root@10.0.0.1:port\n", "hosts[0].ssh", None, ""),
], ids=["string-for-list", "hosts-misspelt", "site-misspelt", "bad-ssh-spec"])
def test_bad_hosts_and_site_files_name_file_field_and_line(tmp_path, loader, text, field,
                                                           line, reason):
    p = tmp_path / "input.yaml"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        loader(p)
    assert (exc.value.path, exc.value.field) == (str(p), field)
    if line is not None:
        assert str(exc.value) == f"{p}:{line}: {field}: {exc.value.reason}"
    assert reason in exc.value.reason


# --- credentials ---------------------------------------------------------------------------

def _creds(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    os.chmod(p, 0o600)
    return p


@pytest.mark.parametrize(("text", "field"), [
    ("rack: [{username: a, password_env: [A, B]}]\n", "rack[0].password_env"),
    ("rack: [{username: [a], password: x}]\n", "rack[0].username"),
    ("rack: []\n", "rack"),
    ("rack: [{username: a, password: x, password_env: P}]\n", "rack[0]"),
    ("rack: [{username: a, password: {nested: secret-42}}]\n", "rack[0].password"),
])
def test_wrong_types_at_depth_in_credentials(tmp_path, text, field):
    with pytest.raises(CredentialsError) as exc:
        credentials.resolve("rack", _creds(tmp_path, text))
    assert exc.value.field == field
    assert exc.value.line == 1
    assert "secret-42" not in str(exc.value)


def test_oversized_credentials_file_is_refused_unparsed(tmp_path):
    p = _creds(tmp_path, "rack:\n" + "  - {username: a, password: b}\n" * 20000)
    with pytest.raises(CredentialsError, match="larger than"):
        credentials.resolve("rack", p)


def test_library_never_prompts(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("METALCTL_CREDENTIALS_FILE", raising=False)

    def no_input(*args):
        raise AssertionError("the library read stdin")

    monkeypatch.setattr("builtins.input", no_input)
    monkeypatch.setattr("getpass.getpass", no_input)
    with pytest.raises(CredentialsError):
        credentials.resolve("rack")
    asked = []
    cred = credentials.Credential("admin", credentials.Secret("pw"))
    got = credentials.resolve("rack", prompt=lambda name: asked.append(name) or cred)
    assert asked == ["rack"]
    assert got.entries == (cred,)
    with pytest.raises(CredentialsError):
        credentials.resolve("rack", prompt=lambda name: cred, interactive=False)


def test_waiver_expiry_wrong_type_and_impossible_date(tmp_path):
    from metalctl.audit import waivers

    w = tmp_path / "w.yaml"
    w.write_text("waivers:\n  - rule: KRN-011\n    reason: long enough reason\n"
                 "    expires: 20270101\n")
    with pytest.raises(InputError) as exc:
        waivers.load(w, {"KRN-011"})
    assert (exc.value.field, exc.value.line) == ("waivers[0].expires", 4)
    w.write_text("waivers:\n  - rule: KRN-011\n    reason: long enough reason\n"
                 "    expires: 2027-02-30\n")
    with pytest.raises(InputError) as exc:
        waivers.load(w, {"KRN-011"})
    assert (exc.value.field, exc.value.line) == ("waivers[0].expires", 4)
    assert "not a date" in exc.value.reason


@pytest.mark.parametrize("content", [b"\x00\xff", b"not pem", b""])
def test_pki_import_of_garbage_is_an_input_error(run, tmp_path, content):
    bad = tmp_path / "bad.pem"
    bad.write_bytes(content)
    code, out = run(["pki", "init", "--pki-dir", str(tmp_path / "pki"),
                     "--import-cert", str(bad), "--import-key", str(bad)])
    assert code == 3
    assert str(bad) in out
    assert not (tmp_path / "pki" / "ca").exists()
