"""No input crashes metalctl: every data file format, target string and option.

Hypothesis takes each format's valid example and breaks it (a value of another type
at any depth, an unknown key, a string where a list belongs), and also feeds raw
bytes, other encodings, YAML aliases, directories and oversized files. The CLI runs
in-process (``metalctl.cli.main.main``); its stage functions are replaced by a guard,
so a file that is still valid ends at the guard instead of probing anything.

Every run must end in exit 3 with one message naming the file and a field, or at the
guard; never in a traceback or any other exit code.
"""

from __future__ import annotations

import copy
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metalctl.audit.run as audit_stage
import metalctl.discover as discover_stage
import metalctl.harden as harden_stage
from metalctl.cli import common
from metalctl.data import data_dir
from metalctl.errors import InputError
from metalctl.profile import bios
from metalctl.profile.stage import read_facts_file
from metalctl.rules import catalogue as rules_mod
from tests.unit import clirun

REACHED = 97  # the guard's exit code: the input was accepted and a stage would run
FAST = settings(max_examples=15, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = {
    "credentials": (ROOT / "inventory" / "credentials.example.yaml", ".yaml"),
    "hosts": (ROOT / "inventory" / "hosts.yaml", ".yaml"),
    "site": (data_dir("hardening") / "site.yaml", ".yaml"),
    "waivers": (ROOT / "hardening" / "waivers.example.yaml", ".yaml"),
    "profile": (ROOT / "profiles" / "nfv-sriov.yaml", ".yaml"),
    "bios-map": (ROOT / "profiles" / "bios" / "dell-idrac.yaml", ".yaml"),
    "baremetal-nodes": (ROOT / "inventory" / "baremetal-nodes.example.yaml", ".yaml"),
    "instackenv": (ROOT / "inventory" / "instackenv.example.json", ".json"),
}
#: formats whose sample is written here (the rack file, the Nova site): no shipped example
#: is self-contained (the lab's rack names the lab's directory)
INLINE = {
    "rack": {
        "name": "fuzz",
        "bmc": {"ranges": ["127.0.0.1", "127.0.0.2:623"], "credentials": ["lab"],
                "protocols": ["redfish", "ipmi"], "max_addresses": 16},
        "ironic": {"url": "http://127.0.0.1:6385", "resource_class": "baremetal",
                   "name_template": "{vendor}-{serial}", "manage": False},
        "site": {"policy": str(data_dir("hardening") / "site.yaml"), "ssh_user": "root"},
        "profiles": {"default": "compute-general", "bios": "if-supported",
                     "rules": [{"when": {"memory_gib_max": 4}, "profile": "compute-small"}]},
        "provision": {"os": "RHEL9", "via": "pxe", "serve": "127.0.0.1:8080",
                      "boot_url": "http://127.0.0.1:8080", "timeout_s": 900,
                      "kernel": "vmlinuz", "kernel_args": ["console=ttyS0"]},
        "audit": {"gate": "high", "waivers": str(ROOT / "hardening" / "waivers.example.yaml")},
        "until": "discover", "failure_budget": "25%",
        "concurrency": {"discover": 8, "provision": 2},
    },
    "nova-site": {
        "nova": {"transport": {"hosts": ["127.0.0.1:5672"], "credentials": "fuzz-rabbit"},
                 "placement": {"auth_type": "password",
                               "auth_url": "https://127.0.0.1:5000/v3",
                               "credentials": "fuzz-placement", "project_name": "service"},
                 "libvirt": {"virt_type": "qemu"}, "state_path": "/var/lib/nova",
                 "cpu_allocation_ratio": 4.0},
        "handoff": {"api": {"compute_endpoint": "http://127.0.0.1:8774/v2.1",
                            "placement_endpoint": "http://127.0.0.1:8778",
                            "placement_credentials": "fuzz-placement"},
                    "cell_mapping": {"method": "interval"}},
    },
}
SAMPLES["provision-site"] = (ROOT / "tests" / "samples" / "kickstart" / "site.yaml", ".yaml")
FACTS = {"cpus": [[0, 0, 0, 0, True], [1, 1, 0, 0, True]],
         "numa": [{"id": 0, "memory_mib": 4096, "hugepages": {"2048": 0}}],
         "nics": [{"name": "eno1", "mac": "52:54:00:00:00:01", "numa_node": 0}],
         "cpu_vendor": "intel", "source": "file"}


class Reached(BaseException):  # not an Exception: main must not catch it
    """Raised by the guard in place of a stage: the input was accepted."""


@pytest.fixture
def cli(monkeypatch):
    """Run ``metalctl ARGV`` in-process; returns (exit code, everything printed)."""
    home = Path(tempfile.mkdtemp(prefix="fuzz-home-"))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("METALCTL_STORE", str(home / "store.db"))
    monkeypatch.setenv("METALCTL_PKI_DIR", str(home / "pki"))
    for var in ("METALCTL_CREDENTIALS_FILE", "METALCTL_CA_BUNDLE", "OS_CLOUD",
                "METALCTL_IRONIC_URL"):
        monkeypatch.delenv(var, raising=False)

    def guard(*args: Any, **kwargs: Any) -> Any:
        raise Reached

    monkeypatch.setattr(discover_stage, "discover", guard)
    monkeypatch.setattr(harden_stage, "harden", guard)
    monkeypatch.setattr(audit_stage, "audit", guard)
    monkeypatch.setattr(common, "ironic", guard)
    # the credential sets the inline Nova site names, and the provision site's password
    for name in ("FUZZ_RABBIT", "FUZZ_PLACEMENT"):
        monkeypatch.setenv(f"METALCTL_CRED_{name}_USERNAME", "fuzz")
        monkeypatch.setenv(f"METALCTL_CRED_{name}_PASSWORD", "fuzz-not-shown")
    monkeypatch.setenv("KS_SAMPLE_ROOT_PASSWORD", "fuzz-root-pw")
    # the shipped rule catalogue is read once, not once per example (it is not under test)
    real_load, loaded = rules_mod.load, {}

    def load_rules_once(dirs: Any = ()) -> Any:
        key = tuple(map(str, dirs or ()))
        if key not in loaded:
            loaded[key] = real_load(dirs)
        return loaded[key]

    monkeypatch.setattr(rules_mod, "load", load_rules_once)

    run = clirun.runner(monkeypatch, Reached, REACHED)
    run.home = home  # type: ignore[attr-defined]
    with clirun.logging_restored():
        yield run


def assert_refused(code: int, out: str, path: str) -> None:
    """Exit 3, one message naming the file and a field; never a traceback."""
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    assert code == 3, (code, out)
    assert re.search(re.escape(path) + r"(:\d+)?: \S", out), out


def assert_refused_or_reached(code: int, out: str, path: str) -> None:
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    assert code in (3, REACHED), (code, out)
    if code == 3:
        assert re.search(re.escape(path) + r"(:\d+)?: \S", out), out


# --- how each format is read by the CLI -----------------------------------------------

def _creds_argv(path: Path) -> list[str]:
    path.chmod(0o600)
    return ["discover", "127.0.0.1", "-c", "rack-a", "--credentials-file", str(path),
            "--no-store"]


ARGV: dict[str, Callable[[Path], list[str]]] = {
    "credentials": _creds_argv,
    "hosts": lambda p: ["harden", "--inventory", str(p), "--check"],
    "site": lambda p: ["harden", "h1.example", "--site", str(p), "--check"],
    "waivers": lambda p: ["audit", "h1.example", "--waivers", str(p)],
    "profile": lambda p: ["profile", "show", str(p)],
    "baremetal-nodes": lambda p: ["enroll", "--from-file", str(p), "--dry-run"],
    "instackenv": lambda p: ["enroll", "--from-file", str(p), "--dry-run"],
}


def _run_library(fn: Callable[[], Any], path: str) -> tuple[int, str]:
    """Formats with no CLI verb that reads a bare file (BIOS maps, facts): the library
    must raise InputError naming the file, or accept the file."""
    try:
        fn()
    except InputError as exc:
        return 3, str(exc)
    return REACHED, ""


def _provision_site(path: Path) -> Any:
    """As ``metalctl provision --site`` and a rack's ``provision.site`` read it."""
    from metalctl.hosts import load_site
    from metalctl.provision import kickstart

    return kickstart.load_site(load_site(path), label=str(path))


def _nova_site(path: Path) -> Any:
    """As ``metalctl handoff --site`` and a rack's ``site.nova`` read it."""
    from metalctl.handoff import load_site

    return load_site(path)


def read_as(fmt: str, path: Path, cli: Any) -> tuple[int, str]:
    if fmt == "provision-site":
        return _run_library(lambda: _provision_site(path), str(path))
    if fmt == "nova-site":
        return _run_library(lambda: _nova_site(path), str(path))
    if fmt == "rack":
        code, out = cli(["run", str(path), "--credentials-file", str(_valid_creds(cli))])
        return (REACHED if code == 0 else code), out  # a run that found no BMC is accepted
    if fmt == "bios-map":
        return _run_library(lambda: bios.BiosLibrary([path.parent]).maps(), str(path))
    if fmt == "facts":
        return _run_library(lambda: read_facts_file(path), str(path))
    code, out = cli(ARGV[fmt](path))
    return (REACHED if fmt == "profile" and code == 0 else code), out  # show is read-only


def sample(fmt: str) -> Any:
    if fmt == "facts":
        return copy.deepcopy(FACTS)
    if fmt in INLINE:
        return copy.deepcopy(INLINE[fmt])
    path, suffix = SAMPLES[fmt]
    text = path.read_text()
    return json.loads(text) if suffix == ".json" else yaml.safe_load(text)


def write(fmt: str, content: bytes | str | Any) -> Path:
    suffix = ".json" if fmt in ("facts", "instackenv") else ".yaml"
    d = Path(tempfile.mkdtemp(prefix=f"fuzz-{fmt}-"))
    path = d / f"input{suffix}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content)
    else:
        path.write_text(json.dumps(content, default=str) if suffix == ".json"
                        else yaml.safe_dump(content, sort_keys=False))
    return path


ALL_FORMATS = [*SAMPLES, "facts", *INLINE]

# --- wrong shapes and types at any depth ----------------------------------------------

#: values that reached the code before issue 19: ports out of range (alone, in host:port
#: and in URLs), paths that do not exist, control characters, credentials in a URL
HOSTILE_VALUES = [
    "127.0.0.1:70000", "127.0.0.1:0", "[::1]:99999", "h:", ":80", "http://127.0.0.1:70000",
    "https://[::1]:65536/v3", "http://u:hunter2@127.0.0.1:99999", "http://", "http://[::1",
    "/nonexistent/fuzz/file", "relative/missing", "a\nb", "x\x1b[2J", "65536", "-1",
    "ipmi://h:623", "h:623"]
HOSTILE = st.sampled_from(HOSTILE_VALUES)
WRONG = st.one_of(st.integers(-5, 70000), st.floats(allow_nan=True), st.booleans(),
                  st.none(), st.text(max_size=12), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=2), HOSTILE)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = value
    return doc


@st.composite
def mutated(draw: Any, fmt: str) -> tuple[Any, str]:
    doc = sample(fmt)
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    kind = draw(st.sampled_from(["replace", "unknown-key", "string-for-list", "hostile"]))
    if kind == "hostile":  # a string field (a path, a port, a URL...) given a hostile value
        leaves = [p for p in paths if p and isinstance(_get(doc, p), str)]
        if leaves:
            return _set(doc, draw(st.sampled_from(leaves)), draw(HOSTILE)), kind
        kind = "replace"
    if kind == "replace":
        return _set(doc, path, draw(WRONG)), kind
    target = doc
    for part in path:
        target = target[part]
    if kind == "unknown-key" and isinstance(target, dict):
        target["zz_" + draw(st.text("abcdefghij", min_size=1, max_size=6))] = 1
        return doc, kind
    if isinstance(target, list) and path:
        return _set(doc, path, "a.example"), kind
    return _set(doc, path, draw(WRONG)), "replace"


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_wrong_shapes_and_types_are_input_errors(fmt, cli):
    @FAST
    @given(mutated(fmt))
    def check(case: tuple[Any, str]) -> None:
        doc, _kind = case
        path = write(fmt, doc)
        code, out = read_as(fmt, path, cli)
        assert_refused_or_reached(code, out, str(path))

    check()


# --- encodings and raw bytes ----------------------------------------------------------

@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_binary_and_other_encodings_are_input_errors(fmt, cli):
    @FAST
    @given(st.binary(min_size=1, max_size=200).filter(lambda b: _not_utf8(b)))
    def check(raw: bytes) -> None:
        path = write(fmt, raw)
        code, out = read_as(fmt, path, cli)
        assert_refused(code, out, str(path))

    check()
    utf16 = write(fmt, json.dumps(sample(fmt), default=str).encode("utf-16"))
    assert_refused(*read_as(fmt, utf16, cli), str(utf16))


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_random_text_is_refused_or_accepted_never_a_crash(fmt, cli):
    @FAST
    @given(st.text(max_size=80))
    def check(text: str) -> None:
        path = write(fmt, text)
        code, out = read_as(fmt, path, cli)
        assert_refused_or_reached(code, out, str(path))

    check()


# --- aliases, directories, sizes ------------------------------------------------------

@pytest.mark.parametrize("fmt", [f for f in ALL_FORMATS if f not in ("facts", "instackenv")])
def test_yaml_alias_bomb_is_refused(fmt, cli):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    path = write(fmt, bomb)
    code, out = read_as(fmt, path, cli)
    assert_refused(code, out, str(path))
    assert "alias" in out


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_a_directory_where_a_file_belongs(fmt, cli):
    d = Path(tempfile.mkdtemp(prefix="fuzz-dir-")) / ("dir.json" if fmt in (
        "facts", "instackenv") else "dir.yaml")
    d.mkdir()
    d.chmod(0o700)
    code, out = read_as(fmt, d, cli)  # BIOS maps: a *.yaml directory among the maps
    assert_refused(code, out, str(d))


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_huge_files_are_refused_unparsed(fmt, cli):
    path = write(fmt, "#" + "x" * (5 * 2**20) + "\n")
    code, out = read_as(fmt, path, cli)
    assert_refused(code, out, str(path))
    assert "larger than" in out


# --- targets and options --------------------------------------------------------------

TARGET_TEXT = st.one_of(
    st.text(alphabet="0123456789abcdef.:-/[]@ ", max_size=30),
    st.builds(lambda s, t: f"{s}://{t}", st.sampled_from(["ipmi", "https", "ftp", "IPMI"]),
              st.text(alphabet="0123456789.:-/[]", max_size=20)),
    st.text(max_size=20),
)


@FAST
@given(st.lists(TARGET_TEXT, min_size=1, max_size=4))
def test_any_target_text_is_refused_or_accepted_never_probed_blindly(cli, targets):
    code, out = cli(["discover", *targets, "-c", "nowhere", "--no-store"])
    assert "Traceback" not in out, out
    assert code == 3, (code, out)  # a bad target, or (all good) no credential set "nowhere"


def _valid_creds(cli: Any) -> Path:
    path = cli.home / "creds.yaml"
    path.write_text("lab: [{username: admin, password: pw}]\n")
    path.chmod(0o600)
    return path


OPTION = st.sampled_from(["--concurrency", "--max-addresses", "--connect-timeout",
                          "--read-timeout", "--ipmi-port", "--redfish-port"])
OPTION_VALUE = st.one_of(st.integers(-3, 70000).map(str), st.sampled_from(
    ["nan", "inf", "-inf", "-0.5", "0", "0.0", "1e309", "x", "", "65536", "1"]))


@FAST
@given(OPTION, OPTION_VALUE)
def test_options_are_checked_before_any_probe(cli, option, value):
    creds = _valid_creds(cli)
    code, out = cli(["discover", "127.0.0.1", "-c", "lab", "--credentials-file", str(creds),
                     "--no-store", option, value])
    assert "Traceback" not in out, out
    assert code in (3, REACHED), (code, out)
    if code == 3:
        assert option in out, out


def test_facts_file_round_trips(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(FACTS))
    topo = read_facts_file(path)
    assert [c.id for c in topo.cpus] == [0, 1]
    assert read_facts_file(path).nics[0].name == "eno1"
    os.unlink(path)


@pytest.mark.parametrize("fmt", [*INLINE, "provision-site"])
def test_the_unbroken_samples_are_accepted(fmt, cli):
    """The property tests above break a sample that is itself valid: each reaches the
    guard (or the library accepts it), so what they refuse is what they broke."""
    path = write(fmt, sample(fmt))
    code, out = read_as(fmt, path, cli)
    assert code == REACHED, out


@pytest.mark.parametrize("fmt", ALL_FORMATS)
def test_every_string_field_given_each_hostile_value(fmt, cli):
    """Not sampled: every string field of the sample, a share of the hostile values each
    (in turn, so every value meets many fields; about 90 files per format). Refused with
    the file named (a password in a URL field never shown), or accepted; never a crash."""
    doc = sample(fmt)
    leaves = [p for p in _paths(doc) if p and isinstance(_get(doc, p), str)]
    step = max(1, -(-len(leaves) * len(HOSTILE_VALUES) // 90))
    for i, leaf in enumerate(leaves):
        url_field = "://" in _get(doc, leaf)
        for value in HOSTILE_VALUES[i % step::step]:
            path = write(fmt, _set(copy.deepcopy(doc), leaf, value))
            code, out = read_as(fmt, path, cli)
            assert_refused_or_reached(code, out, str(path))
            assert not url_field or "hunter2" not in out, out
            if code == 3:
                assert len([ln for ln in out.splitlines() if ln.strip()]) <= 2, out
