"""Issue 19, bad input: one test per class of input that reached the code or misled.

Every refusal is one line naming the file or option and the field, with the README's exit
code (3 invalid input, nothing changed; 4 a peer everything depends on is unavailable).
The CLI runs in-process through the fuzz test's ``cli`` fixture (stages replaced by a
guard); nothing here needs a peer: "Ironic unreachable" is a closed loopback port.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from metalctl.errors import IronicUnavailable, PeerUnavailable
from metalctl.run import STAGES, Adapter, StepResult
from metalctl.run.scheduler import ScheduleOptions, Scheduler
from metalctl.store import Store
from tests.unit.test_input_fuzz import REACHED, cli  # noqa: F401 - the fixture

CLOSED = "127.0.0.1"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((CLOSED, 0))
        return s.getsockname()[1]


def one_error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, out
    assert "Traceback" not in out, out
    assert "internal error" not in out, out
    return lines[0]


@pytest.fixture
def creds(cli):  # noqa: F811
    path = cli.home / "creds.yaml"
    path.write_text("lab: [{username: admin, password: pw-12345}]\n")
    path.chmod(0o600)
    return path


def rack(tmp: Path, body: str = "", name: str = "rack.yaml") -> Path:
    path = tmp / name
    path.write_text("bmc:\n  ranges: [127.0.0.1]\n  credentials: [lab]\n"
                    "profiles: {default: compute-general}\n" + body)
    return path


# --- exit codes that disagree with the docs --------------------------------------------


def test_run_with_ironic_unreachable_exits_4_before_any_probe(cli, creds, monkeypatch):  # noqa: F811
    from metalctl.cli import common  # the fixture's guard stands in for Ironic: restore it
    from metalctl.ironic import Ironic, IronicConfig

    monkeypatch.setattr(common, "ironic",
                        lambda a: Ironic(IronicConfig(url=a.ironic_url, max_retries=0)).connect())
    code, out = cli(["run", str(rack(cli.home, "until: enroll\n")), "--credentials-file",
                     str(creds), "--ironic-url", f"http://{CLOSED}:{closed_port()}"])
    assert code == 4, out
    assert "Ironic" in one_error_line(out)
    assert not (cli.home / "store.db").exists()  # nothing half-done: not even the store


@pytest.mark.parametrize("peer", ["ironic", "nova"])
def test_a_stage_finding_its_peer_down_stops_the_run_and_raises(tmp_path, peer):
    """An adapter raising IronicUnavailable (enroll) or CloudUnavailable (hand-off: Nova,
    Placement): the run raises it (exit 4 in the CLI) and starts nothing new, rather than
    reporting every node failed with exit 1."""
    from metalctl.errors import CloudUnavailable
    from metalctl.model.node import DiscoveryRecord, Protocol, Status

    store = Store(tmp_path / "s.db").open()
    recs = [DiscoveryRecord(address=f"127.25.9.{i}", port=443, protocol=Protocol.REDFISH,
                            status=Status.OK, scheme="https", name=f"n{i}") for i in range(3)]
    later: list[str] = []

    def discover(keys, emit):
        for r in recs:
            store.save_discovered(r)
            emit(StepResult(r.key, True))

    def enroll(keys, emit):
        if peer == "nova":
            raise CloudUnavailable(service="compute", reason="unreachable")
        raise IronicUnavailable(reason="API unreachable (ConnectFailure)")

    adapters = [Adapter("discover", discover, recheck=True), Adapter("enroll", enroll)]
    adapters += [Adapter(s, lambda keys, emit, s=s: later.extend(keys)) for s in STAGES[2:]]
    sched = Scheduler(adapters, store, ScheduleOptions(limits={"enroll": 1}))
    with pytest.raises(PeerUnavailable):
        sched.run()
    assert later == []
    assert ("Ironic" if peer == "ironic" else "compute") in (sched.stopped or "")
    assert sum(n.status == "failed" for n in sched.nodes.values()) == 1  # only the one tried
    store.close()


def test_every_peer_error_maps_to_exit_4_in_main():
    """One mapping: each "peer unavailable" class is a PeerUnavailable."""
    from metalctl.errors import BootServiceError, CloudUnavailable, LabError, StoreError

    for cls in (CloudUnavailable, LabError, StoreError, BootServiceError, IronicUnavailable):
        assert issubclass(cls, PeerUnavailable), cls


# --- values out of range that reach the code -------------------------------------------


@pytest.mark.parametrize(("argv", "option"), [
    (["serve", "--bind", "127.0.0.1", "--port", "70000"], "--port"),
    (["serve", "--bind", "127.0.0.1", "--public-url", "http://127.0.0.1:65536"],
     "--public-url"),
    (["provision", "n1", "--check", "--serve", "127.0.0.1:70000"], "--serve"),
    (["provision", "n1", "--check", "--boot-url", "http://127.0.0.1:99999"], "--boot-url"),
    (["enroll", "--dry-run", "--ironic-url", "http://127.0.0.1:70000"], "--ironic-url"),
    (["discover", "127.0.0.1", "-c", "lab", "--no-store", "--redfish-port", "65536"],
     "--redfish-port"),
    (["discover", "127.0.0.1:70000", "-c", "lab", "--no-store"], "targets[0]"),
    (["harden", "h1:70000", "--check"], "hosts[0]"),
    (["lab", "status", "--boot-port", "70000"], "--boot-port"),
])
def test_a_port_out_of_range_in_an_option_is_exit_3_naming_it(cli, argv, option):  # noqa: F811
    code, out = cli(argv)
    assert code == 3, out
    assert option in one_error_line(out)


PORT_FIELDS = [
    ("ironic:\n  url: http://127.0.0.1:70000\n", "ironic.url"),
    ("provision:\n  boot_url: http://127.0.0.1:65536/\n", "provision.boot_url"),
    ("provision:\n  serve: 127.0.0.1:99999\n", "provision.serve"),
    ("provision:\n  serve: ${FUZZ_SERVE}\n", "provision.serve"),  # after expansion
]


@pytest.mark.parametrize(("body", "field"), PORT_FIELDS)
def test_a_port_out_of_range_in_a_rack_field_is_that_field(cli, creds, monkeypatch, body,  # noqa: F811
                                                            field):
    monkeypatch.setenv("FUZZ_SERVE", "10.0.0.1:70000")
    path = rack(cli.home, body)
    code, out = cli(["run", str(path), "--credentials-file", str(creds)])
    assert code == 3, out
    line = one_error_line(out)
    assert f"{path}:" in line
    assert field in line
    assert "65535" in line


def test_ports_in_every_site_and_hosts_file_are_checked_by_their_schema(tmp_path):
    from metalctl.data import loader
    from metalctl.errors import InputError

    cases = [
        ("hosts", {"hosts": [{"name": "h1", "ssh": "root@h1:70000"}]}, "hosts[0].ssh"),
        ("site-nova", {"transport": {"hosts": ["r:99999"], "credentials": "x"},
                       "placement": {"auth_type": "admin_token", "credentials": "x",
                                     "endpoint": "http://p:8778"}}, "transport.hosts[0]"),
        ("site-nova", {"transport": {"hosts": ["r:5672"], "credentials": "x"},
                       "placement": {"auth_type": "admin_token", "credentials": "x",
                                     "endpoint": "http://p:87780"}}, "placement.endpoint"),
        ("site-handoff", {"nova": {}, "handoff": {"api": {
            "compute_endpoint": "http://n:70000", "placement_endpoint": "http://p:8778",
            "placement_credentials": "x"}}}, "handoff.api.compute_endpoint"),
        ("kickstart-site", {"install": {"url": "http://m:99999/os"}, "root_password":
                            {"hash": "x"}, "ssh_keys": [{"user": "root", "key": "k"}]},
         "install.url"),
    ]
    for name, data, field in cases:
        with pytest.raises(InputError) as err:
            loader.validate(data, name, "f.yaml")
        assert err.value.kwargs["field"] == field, (name, str(err.value))
        assert "65535" in str(err.value)


# --- files and folders named but not checked -------------------------------------------


def _path_argvs(home: Path, missing: str) -> list[tuple[list[str], str]]:
    key = home / "key"
    key.write_text("")
    return [
        (["discover", "127.0.0.1", "-c", "lab", "--no-store", "--ca-bundle", missing],
         "--ca-bundle"),
        (["discover", "127.0.0.1", "-c", "lab", "--no-store", "--credentials-file", missing],
         "--credentials-file"),
        (["run", missing], "--rack"),
        (["run", str(rack(home)), "--ca-bundle", missing], "--ca-bundle"),
        (["run", str(rack(home)), "--ssh-key", missing], "--ssh-key"),
        (["run", str(rack(home)), "--known-hosts", missing], "--known-hosts"),
        (["audit", "h1", "--ssh-key", missing], "--ssh-key"),
        (["audit", "h1", "--known-hosts", missing], "--known-hosts"),
        (["audit", "h1", "--waivers", missing], "--waivers"),
        (["audit", "h1", "--rules-dir", missing], "--rules-dir"),
        (["audit", "--inventory", missing], "--inventory"),
        (["harden", "h1", "--check", "--site", missing], "--site"),
        (["harden", "h1", "--check", "--rules-dir", missing], "--rules-dir"),
        (["profile", "list", "--profile-dir", missing], "--profile-dir"),
        (["provision", "n1", "--check", "--files-dir", missing], "--files-dir"),
        (["provision", "n1", "--check", "--template-dir", missing], "--template-dir"),
        (["provision", "n1", "--check", "--ssh-key", missing], "--ssh-key"),
        (["provision", "n1", "--check", "--site", missing], "--site"),
        (["serve", "--bind", "127.0.0.1", "--files-dir", missing], "--files-dir"),
        (["serve", "--bind", "127.0.0.1", "--dnsmasq-check", missing], "--dnsmasq-check"),
        (["handoff", "h1", "--check", "--site", missing], "--site"),
        (["enroll", "--dry-run", "--from-file", missing], "--from-file"),
        (["profile", "facts", "n1", "--file", missing], "--file"),
        (["profile", "derive", "n1", "-p", "hpc", "--facts", missing], "--facts"),
        (["profile", "verify", "n1", "--file", missing], "--file"),
        (["pki", "init", "--import-cert", missing, "--import-key", str(key)],
         "--import-cert"),
    ]


def test_every_path_option_is_checked_before_the_verb_runs(cli):  # noqa: F811
    missing = str(cli.home / "no-such" / "thing")
    for argv, option in _path_argvs(cli.home, missing):
        code, out = cli(argv)
        assert code == 3, (argv, out)
        line = one_error_line(out)
        assert missing in line, (argv, line)
        if option != "--rack":  # the positional rack file is named as the file itself
            assert option in line, (argv, line)


def test_a_file_where_a_folder_belongs_and_back(cli):  # noqa: F811
    afile = cli.home / "plain"
    afile.write_text("x")
    code, out = cli(["audit", "h1", "--rules-dir", str(afile)])
    assert code == 3
    assert "not a folder" in one_error_line(out)
    code, out = cli(["audit", "h1", "--ssh-key", str(cli.home)])
    assert code == 3
    assert "a file is expected" in one_error_line(out)
    # where something is written, its folder must exist
    code, out = cli(["audit", "h1", "--junit", str(cli.home / "no-such" / "a.xml")])
    assert code == 3
    assert "--junit" in one_error_line(out)


def test_every_rack_path_field_is_checked_at_load(tmp_path):
    from metalctl.errors import InputError
    from metalctl.run import rackfile

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for (section, key), kind in rackfile.PATHS.items():
        # a file under a file can be neither read nor created
        bad = blocker / "x" if kind in ("output", "state-dir") else tmp_path / "missing"
        extra = f"{section}:\n  {key}: {bad}\n" if section != "bmc" else ""
        text = ("bmc:\n  ranges: [127.0.0.1]\n  credentials: [lab]\n"
                + (f"  {key}: {bad}\n" if section == "bmc" else "") + extra)
        path = tmp_path / "rack.yaml"
        path.write_text(text)
        with pytest.raises(InputError) as err:
            rackfile.load(path)
        line = text.splitlines().index(f"  {key}: {bad}") + 1
        assert str(err.value).startswith(f"{path}:{line}: {section}.{key}: "), str(err.value)


def test_boot_files_must_be_in_the_files_folder(tmp_path):
    from metalctl.errors import InputError
    from metalctl.run import rackfile

    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "vmlinuz").write_text("")
    path = tmp_path / "rack.yaml"
    path.write_text("bmc: {ranges: [127.0.0.1], credentials: [lab]}\n"
                    "provision:\n  files_dir: files\n  kernel: vmlinuz\n  initrd: initrd.img\n")
    with pytest.raises(InputError, match=r"rack.yaml:5: provision.initrd: 'initrd.img': no "
                                         r"such file in files_dir"):
        rackfile.load(path)


# --- messages that mislead ----------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "/etc/passwd:3: (top level): expected object, got a string",
    "creds.yaml:4: rack-a[0].password_env: RACK_A_PASSWORD is not set",
    "password_env: RACK_A_PASSWORD",
    "password_file: /etc/metalctl/bmc.pw",
    "lab[0].password: expected string, got an integer",
    "cannot read /home/u/.passwd-s3fs: permission denied",
])
def test_the_redactor_keeps_ordinary_words(text):
    from metalctl import logredact

    assert logredact.scrub(text) == text


@pytest.mark.parametrize(("text", "secret"), [
    ("password: hunter2", "hunter2"),
    ("ipmi_password=hunter2&x=1", "hunter2"),
    ('{"redfish_password": "hunter2"}', "hunter2"),
    ("Ironic http://admin:hunter2@10.0.0.1:6385/v1 said 409", "hunter2"),
])
def test_the_redactor_still_masks_values(text, secret):
    from metalctl import logredact

    assert secret not in logredact.scrub(text)


def test_an_error_about_a_passwd_file_keeps_its_words_and_line(cli):  # noqa: F811
    passwd = cli.home / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    code, out = cli(["harden", "h1", "--check", "--site", str(passwd)])
    assert code == 3
    line = one_error_line(out)
    assert f"{passwd}:1: (top level)" in line
    assert "root:x" not in line  # the file's content is never echoed
    assert "***" not in line


def test_every_verb_an_error_suggests_exists():
    """``metalctl VERB [SUB]`` in any message of the package names a real verb."""
    import re

    from metalctl.cli.main import parser

    root = Path(__file__).resolve().parents[2] / "metalctl"
    sub = next(a for a in parser()._actions if a.dest == "verb")
    verbs = sub.choices
    bad = []
    for source in root.rglob("*.py"):
        for m in re.finditer(r"`metalctl ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", source.read_text()):
            verb, subverb = m.group(1), m.group(2)
            if verb not in verbs:
                bad.append((source.name, m.group(0)))
                continue
            inner = [a for a in verbs[verb]._actions if a.choices and a.dest != "help"
                     and isinstance(a.choices, dict)]
            if subverb and inner and subverb not in inner[0].choices:
                bad.append((source.name, m.group(0)))
    assert bad == []


@pytest.mark.parametrize("argv", [
    ["profile", "show", "bad\nname"],
    ["run", "rack\n.yaml"],
    ["discover", "10.0.0.1\nERROR: forged", "-c", "lab", "--no-store"],
    ["audit", "h1", "--ssh-key", "/no/key\nforged"],
])
def test_a_name_with_a_newline_stays_on_the_error_line(cli, argv):  # noqa: F811
    code, out = cli(argv)
    assert code == 3, out
    line = one_error_line(out)
    assert "\\n" in line


def test_a_file_that_is_not_yaml_is_never_echoed(cli):  # noqa: F811
    """A credentials file whose first line is ``user: secret``, a PEM key as a site file:
    named by file, field and line; never a word of their content."""
    creds = cli.home / "creds.yaml"
    creds.write_text("admin: Sup3rSecretLine\n")
    creds.chmod(0o600)
    code, out = cli(["discover", "127.0.0.1", "-c", "admin", "--credentials-file", str(creds),
                     "--no-store"])
    assert code == 3
    assert "Sup3rSecretLine" not in out
    assert str(creds) in one_error_line(out)
    key = cli.home / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n")
    for argv in (["harden", "h1", "--check", "--site", str(key)],
                 ["harden", "--inventory", str(key), "--check"],
                 ["run", str(key)], ["audit", "h1", "--waivers", str(key)]):
        code, out = cli(argv)
        assert code == 3, out
        assert "BEGIN" not in out
        assert "b3Bl" not in out
    tagged = cli.home / "tagged.yaml"
    tagged.write_text("site: !SecretTag x\n")
    code, out = cli(["harden", "h1", "--check", "--site", str(tagged)])
    assert code == 3
    assert "SecretTag" not in out


# --- silent choices ------------------------------------------------------------------------


DUPLICATES = {
    "rack": ("bmc:\n  ranges: [127.0.0.1]\n  credentials: [lab]\n  ranges: [127.0.0.2]\n",
             ["run", "{}"], "bmc.ranges", 4),
    "site": ("sysctl: {}\nsysctl: {}\n", ["harden", "h1", "--check", "--site", "{}"],
             "sysctl", 2),
    "hosts": ("hosts:\n  - name: a\n    ssh: a\n    name: b\n",
              ["harden", "--inventory", "{}", "--check"], "hosts[0].name", 4),
    "waivers": ("waivers: []\nwaivers: []\n", ["audit", "h1", "--waivers", "{}"],
                "waivers", 2),
    "credentials": ("lab: [{username: a, password: b, username: c}]\n",
                    ["discover", "127.0.0.1", "-c", "lab", "--no-store", "--credentials-file",
                     "{}"], "lab[0].username", 1),
}


@pytest.mark.parametrize("fmt", DUPLICATES)
def test_a_duplicate_key_names_file_key_and_line(cli, fmt):  # noqa: F811
    text, argv, field, line = DUPLICATES[fmt]
    path = cli.home / f"{fmt}.yaml"
    path.write_text(text)
    path.chmod(0o600)
    code, out = cli([a.replace("{}", str(path)) for a in argv])
    assert code == 3, out
    assert f"{path}:{line}: {field}: duplicate key" in one_error_line(out)


def test_a_duplicate_key_in_json_and_in_every_loader_entry_point(tmp_path):
    from metalctl import data
    from metalctl.errors import InputError

    js = tmp_path / "x.json"
    js.write_text('{"nodes": [], "nodes": []}')
    with pytest.raises(InputError, match="nodes: duplicate key"):
        data.load(js)
    yml = tmp_path / "x.yaml"
    yml.write_text("a: 1\nb:\n  - {c: 1, c: 2}\n")
    for call in (lambda: data.load(yml), lambda: data.load_with_lines(yml),
                 lambda: data.loader.parse(yml.read_text(), str(yml))):
        with pytest.raises(InputError, match=r"x.yaml:3: b\[0\].c: duplicate key"):
            call()


def test_a_list_where_a_mapping_belongs_is_called_a_list(cli):  # noqa: F811
    lst = cli.home / "list.yaml"
    lst.write_text("- a\n- b\n")
    lst.chmod(0o600)
    facts = cli.home / "facts.json"
    facts.write_text('[{"cpus": []}]')
    for argv in (["run", str(lst)], ["harden", "h1", "--check", "--site", str(lst)],
                 ["discover", "127.0.0.1", "-c", "x", "--credentials-file", str(lst),
                  "--no-store"],
                 ["profile", "derive", "n1", "-p", "compute-general", "--facts", str(facts)]):
        code, out = cli(argv)
        assert code == 3, out
        line = one_error_line(out)
        assert "a list" in line, line
        assert "null" not in line


def test_only_naming_no_node_stops_before_any_stage(tmp_path):
    from metalctl.errors import InputError
    from metalctl.model.node import DiscoveryRecord, Protocol, Status

    store = Store(tmp_path / "s.db").open()
    rec = DiscoveryRecord(address="127.25.9.1", port=443, protocol=Protocol.REDFISH,
                          status=Status.OK, scheme="https", name="n1")
    later: list[str] = []

    def discover(keys, emit):
        store.save_discovered(rec)
        emit(StepResult(rec.key, True, name="n1"))

    adapters = [Adapter("discover", discover, recheck=True)]
    adapters += [Adapter(s, lambda keys, emit, s=s: later.extend(keys)) for s in STAGES[1:]]
    sched = Scheduler(adapters, store, ScheduleOptions(only=(rec.key, "nope\nx")))
    with pytest.raises(InputError) as err:
        sched.run()
    assert later == []
    assert str(err.value).startswith("--only: nope\\nx: no node")
    ok = Scheduler(adapters, store, ScheduleOptions(only=(rec.key,), until="enroll"))
    ok.run()
    assert later == [rec.key]
    store.close()


@pytest.mark.parametrize("argv", [
    ["nodes"], ["history"], ["history", "n1"], ["profile", "diff", "n1", "-p", "hpc"],
    ["profile", "verify", "n1", "--local"], ["profile", "apply", "n1", "-p", "hpc"],
    ["profile", "facts", "n1", "--local"],
])
def test_a_reader_never_creates_a_missing_store(cli, argv):  # noqa: F811
    store = cli.home / "nothing-here" / "metalctl.db"
    code, out = cli([*argv, "--store", str(store)])
    assert code == 3, out
    assert f"--store: {store}: no such store" in one_error_line(out)
    assert not store.exists()
    assert not store.parent.exists()


def test_the_same_bmc_with_and_without_its_default_port_is_one_target(cli):  # noqa: F811
    from metalctl.errors import InputError
    from metalctl.netaddrs import parse_targets

    for pair in (["10.0.0.1", "10.0.0.1:623"], ["ipmi://10.0.0.1", "10.0.0.1:623"],
                 ["https://bmc.example", "bmc.example:443"], ["10.0.0.0/30", "10.0.0.2:443"],
                 ["ipmi://10.0.0.1:623", "IPMI://10.0.0.1"]):
        with pytest.raises(InputError, match="overlaps"):
            parse_targets(pair)
    parse_targets(["10.0.0.1", "http://10.0.0.1"])  # Redfish on 80 and 443: two probes
    code, out = cli(["discover", "10.0.0.1", "10.0.0.1:623", "-c", "lab", "--no-store"])
    assert code == 3
    assert "overlaps" in one_error_line(out)


@pytest.mark.parametrize("argv", [
    ["enroll", "--dry-run", "--ironic-url", "http://admin:hunter2@127.0.0.1:99999"],
    ["enroll", "--dry-run", "--ironic-url", "ftp://admin:hunter2@127.0.0.1/"],
    ["discover", "https://admin:hunter2@10.0.0.1", "-c", "lab", "--no-store"],
    ["discover", "https://admin:hunter2@10.0.0.1", "https://admin:hunter2@10.0.0.1", "-c",
     "lab", "--no-store"],
])
def test_a_password_in_an_address_is_never_shown(cli, argv):  # noqa: F811
    code, out = cli(argv)
    assert code == 3, out
    one_error_line(out)
    assert "hunter2" not in out


def test_a_password_in_the_racks_ironic_url_is_never_shown(cli, creds):  # noqa: F811
    path = rack(cli.home, "ironic:\n  url: http://admin:hunter2@127.0.0.1:70000\n"
                          "ironic:\n  url: http://admin:hunter2@127.0.0.1:6385\n")
    code, out = cli(["run", str(path), "--credentials-file", str(creds)])
    assert code == 3
    assert "hunter2" not in out
    assert "duplicate key" in one_error_line(out)
    path = rack(cli.home, "ironic:\n  url: http://admin:hunter2@127.0.0.1:70000\n")
    code, out = cli(["run", str(path), "--credentials-file", str(creds)])
    assert code == 3
    assert "hunter2" not in out


@pytest.mark.parametrize(("argv", "option"), [
    (["pki", "issue", "h1", "--days", "99999999"], "--days"),
    (["pki", "renew", "--within-days", "-1"], "--within-days"),
    (["provision", "n1", "--check", "--deadline", "1e300"], "--deadline"),
    (["provision", "n1", "--check", "--ssh-wait", "0"], "--ssh-wait"),
    (["lab", "status", "--octet", "300"], "--octet"),
    (["lab", "hosts-up", "--net", "256"], "--net"),
    (["discover", "127.0.0.1", "-c", "lab", "--no-store", "--concurrency", "10000000"],
     "--concurrency"),
])
def test_numbers_out_of_range_in_options_are_exit_3(cli, argv, option):  # noqa: F811
    code, out = cli(argv)
    assert code == 3, out
    assert option in one_error_line(out)


def test_an_argparse_error_is_one_line_and_masks_userinfo(cli):  # noqa: F811
    code, out = cli(["run", "r.yaml", "--until", "http://admin:hunter2@h/\nx"])
    assert code == 3
    assert "hunter2" not in out
    assert len([ln for ln in out.splitlines() if "error:" in ln]) == 1


def test_the_rack_is_checked_whole_whatever_until_says(cli, creds):  # noqa: F811
    """The files of later stages (provision site, Nova site) are read before discovery,
    even on a run that stops before those stages."""
    site = cli.home / "provision-site.yaml"
    site.write_text("kickstart:\n  install: {url: 'http://m:99999/os'}\n")
    nova = cli.home / "nova.yaml"
    nova.write_text("nova: {}\nhandoff: {api: {cloud: x}}\n")
    for body, named in ((f"provision:\n  site: {site}\n", str(site)),
                        (f"site:\n  nova: {nova}\n", str(nova))):
        path = rack(cli.home, body + "until: discover\n")
        code, out = cli(["run", str(path), "--credentials-file", str(creds)])
        assert code == 3, out
        assert one_error_line(out).startswith(f"ERROR: {named}:"), out


def test_a_duplicate_key_in_a_facts_file(tmp_path):
    from metalctl.errors import InputError
    from metalctl.profile.stage import read_facts_file

    path = tmp_path / "facts.json"
    path.write_text('{"cpus": [], "cpus": [[0, 0, 0, 0, true]]}')
    with pytest.raises(InputError, match="cpus: duplicate key"):
        read_facts_file(path)


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "1e400"])
def test_a_number_that_is_not_finite_is_a_field_error(tmp_path, value):
    from metalctl.errors import InputError
    from metalctl.run import rackfile

    path = tmp_path / "rack.yaml"
    path.write_text("bmc: {ranges: [127.0.0.1], credentials: [lab]}\n"
                    f"provision:\n  timeout_s: {value}\n")
    with pytest.raises(InputError, match=r"rack.yaml:3: provision.timeout_s: "):
        rackfile.load(path)
