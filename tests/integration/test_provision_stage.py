"""The provision stage's PXE path against a real boot service and a real SSH host.

The machine is scripted here (an HTTP client doing exactly what iPXE and the installer
do: boot script, one-time kickstart, the kickstart's callbacks), so every branch of the
stage runs in seconds; the installed host is a real SSH test host (own /etc, own host
keys) on 10.207.0.0/24. ``test_provision_lab.py`` does the same with QEMU machines that
really network-boot the stand-in installer.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from metalctl.credentials import Secret
from metalctl.errors import InputError
from metalctl.model.hardware import Hardware, NicFacts
from metalctl.model.node import DiscoveryRecord, Lifecycle, Protocol, Status
from metalctl.profile import stage as profile_stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.provision import kickstart as ks
from metalctl.provision.bootservice import BootService
from metalctl.provision.bootstate import BootFiles
from metalctl.provision.stage import (
    NodeInstall,
    ProvisionInputs,
    ProvisionOptions,
    provision,
)
from metalctl.store import Store
from metalctl_lab.hosts import HostLab

from .sshhosts import running

REPO = Path(__file__).resolve().parents[2]
FACTS = REPO / "tests" / "samples" / "facts" / "edge-1s-12c-64g.txt"
ROOT_PW = "Pr0vision-Root-Secret"


@pytest.fixture(scope="module")
def hostlab(tmp_path_factory):
    yield from running(tmp_path_factory, "hosts", 207, (1,))


def _record(i: int) -> DiscoveryRecord:
    return DiscoveryRecord(address=f"127.0.0.{i}", port=443, protocol=Protocol.REDFISH,
                           status=Status.OK, scheme="https", system_id=f"sys{i}",
                           name=f"node{i}", manufacturer="QEMU",
                           hardware=Hardware(nics=(NicFacts(mac=f"52:54:00:00:07:{i:02x}"),
                                                   NicFacts(mac=f"52:54:00:00:17:{i:02x}"))))


def _other_host_key(tmp_path: Path) -> str:
    """A public host key the lab host does not have (an impostor's, or a second install's)."""
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    return other.with_suffix(".pub").read_text()


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "store.db").open()
    topo = inband.parse(FACTS.read_text())
    for i in (1, 2):
        rec = _record(i)
        s.save_discovered(rec)
        key = rec.key
        s.set_state(key, Lifecycle.PROFILED, name=f"node{i}")
        profile_stage.plan(s, profile_stage.NodeRef(label=f"node{i}", key=key),
                           ProfileLibrary().load("hpc"), topo)
    yield s
    s.close()


@pytest.fixture
def boot(tmp_path):
    svc = BootService("127.0.0.1", 0, tmp_path / "boot", files_dir=tmp_path,
                      tick_s=0.2).start()
    (tmp_path / "vmlinuz").write_bytes(b"kernel")
    (tmp_path / "initrd.img").write_bytes(b"initrd")
    yield svc
    svc.stop()


def _site(hostlab: HostLab):
    key = (hostlab.client_key.with_suffix(".pub")).read_text().strip()
    site = {"repositories": {"dnf": [{"id": "baseos",
                                      "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-9"}]},
            "kickstart": {"install": {"liveimg": "http://10.207.0.1/liveimg.tar.gz"},
                          "repositories": {"baseos": {"baseurl": "http://10.207.0.1/os/"}},
                          "root_password": {"env": "PROV_TEST_ROOTPW"},
                          "ssh_keys": [{"user": "root", "key": key}]}}
    return ks.load_site(site, label="site.yaml", environ={"PROV_TEST_ROOTPW": ROOT_PW})


class ScriptedMachine:
    """What iPXE and the installer do, over real HTTP; the installed OS is host h1."""

    def __init__(self, boot: BootService, hostlab: HostLab, *, fail: str | None = None,
                 stop_after_kickstart: bool = False, keys: str | None = None,
                 second_keys: str | None = None, skip_keys: bool = False) -> None:
        self.boot, self.hostlab, self.fail = boot, hostlab, fail
        self.stop_after_kickstart = stop_after_kickstart
        self.keys = keys
        self.second_keys, self.skip_keys = second_keys, skip_keys
        self.powered: list[str] = []
        self.kickstarts: list[str] = []
        self.threads: list[threading.Thread] = []

    def network_boot_once(self, node: NodeInstall) -> str:
        self.powered.append(node.name)
        t = threading.Thread(target=self._boot, args=(node,), daemon=True)
        t.start()
        self.threads.append(t)
        return "scripted: one-time PXE, power on"

    def _boot(self, node: NodeInstall) -> None:
        url = self.boot.url
        script = requests.get(f"{url}/boot/{node.mac.replace(':', '-')}.ipxe", timeout=5).text
        ks_url = re.search(r"inst\.ks=(\S+)", script).group(1)
        text = requests.get(ks_url, timeout=5).text
        self.kickstarts.append(text)
        if self.stop_after_kickstart:
            return
        token = re.search(r"Authorization: Bearer ([A-Za-z0-9_-]+)", text).group(1)
        cb = f"{url}/callback/{node.name}"
        head = {"Authorization": f"Bearer {token}"}
        requests.post(cb, params={"stage": "pre"}, headers=head, timeout=5)
        if self.fail:
            requests.post(cb, params={"stage": "error"}, headers=head, data=self.fail,
                          timeout=5)
            return
        # %post: the marker the kickstart writes, then the host keys, then end
        self.hostlab.exec(1, f"printf 'node={node.name}\\ntemplate=rhel9-kvm\\n' "
                             "> /etc/metalctl-install")
        keys = self.keys or "".join(
            p.read_text() for p in sorted((self.hostlab.host_dir(1) / "upper" / "etc" /
                                           "ssh").glob("ssh_host_*_key.pub")))
        if not self.skip_keys:
            requests.post(cb, params={"stage": "hostkeys"}, headers=head, data=keys,
                          timeout=5)
        if self.second_keys:  # something else holding the token delivers its own
            requests.post(cb, params={"stage": "hostkeys"}, headers=head,
                          data=self.second_keys, timeout=5)
        requests.post(cb, params={"stage": "end"}, headers=head, timeout=5)


def _inputs(boot, hostlab, machine, tmp_path, **kw) -> ProvisionInputs:
    return ProvisionInputs(
        template="rhel9-kvm", target=ks.target_os("RHEL9"), site=_site(hostlab), boot=boot,
        known_hosts=tmp_path / "known_hosts",
        boot_files=BootFiles("vmlinuz", "initrd.img", None, ("console=ttyS0",)),
        power=machine, addresses={"node1": f"{hostlab.address(1)}/24"},
        ssh_key=hostlab.client_key, **kw)


OPTS = ProvisionOptions(via="pxe", deadline_s=60, ssh_wait_s=20, poll_s=0.2)


def test_a_node_is_installed_trusted_and_proven_over_ssh_and_a_rerun_does_nothing(
        store, boot, hostlab, tmp_path, caplog):
    caplog.set_level("DEBUG")
    machine = ScriptedMachine(boot, hostlab)
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert res.status == "installed", res.reason
    assert res.address == hostlab.address(1)
    assert machine.powered == ["node1"]
    # the timings cover every step the install went through, in order
    assert list(res.timings) == ["power", "boot-script", "kickstart-fetched", "pre",
                                 "hostkeys", "end", "ssh"]
    row = store.find("node1")
    assert row["state"] == "installed"
    data = store.get_data(row["key"], "install")
    assert data["address"] == hostlab.address(1)
    assert data["via"] == "pxe"
    # trust on first boot: exactly the delivered keys, for the address and the name
    known = (tmp_path / "known_hosts").read_text()
    for pub in (hostlab.host_dir(1) / "upper" / "etc" / "ssh").glob("ssh_host_*_key.pub"):
        blob = pub.read_text().split()[1]
        assert f"{hostlab.address(1)},node1 " in known
        assert blob in known
    actions = [e.action for e in store.events(row["key"]) if e.stage == "provision"]
    assert actions[0] == "started"
    assert actions[-1] == "installed"
    assert "kickstart-fetched" in actions
    assert "end" in actions
    # the root password travelled as a hash only; no token in logs, store or result
    ks_text = machine.kickstarts[0]
    assert ROOT_PW not in ks_text
    assert re.search(r"rootpw --iscrypted \$6\$", ks_text)
    token = re.search(r"Bearer ([A-Za-z0-9_-]+)", ks_text).group(1)
    dump = subprocess.run(["sqlite3", str(tmp_path / "store.db"), ".dump"],
                          capture_output=True, text=True).stdout
    # (the scripted machine's own HTTP client logs its URLs: only metalctl's logs count)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("metalctl"))
    assert "POST /callback/node1" in ours
    for secret in (ROOT_PW, token):
        assert secret not in ours
        assert secret not in dump
        assert secret not in str(res)
    # a re-run: nothing powered, nothing registered
    again = ScriptedMachine(boot, hostlab)
    [res2] = provision(["node1"], _inputs(boot, hostlab, again, tmp_path), OPTS, store=store)
    assert res2.status == "skipped"
    assert again.powered == []


def test_a_host_answering_with_other_keys_than_delivered_is_refused(store, boot, hostlab,
                                                                   tmp_path):
    machine = ScriptedMachine(boot, hostlab, keys=_other_host_key(tmp_path))
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert res.status == "failed"
    assert "not the host the install delivered keys for" in res.reason
    assert store.find("node1")["state"] == "profiled"


def test_conflicting_or_missing_host_keys_fail_the_node_with_what_to_do(
        store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab, second_keys=_other_host_key(tmp_path))
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert res.status == "failed"
    assert "second, different set of SSH host keys" in res.reason
    assert "reinstall the node (--redo)" in res.reason
    assert not (tmp_path / "known_hosts").exists()  # nothing trusted
    machine = ScriptedMachine(boot, hostlab, skip_keys=True)
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert res.status == "failed"
    assert "`end` without delivering its SSH host keys" in res.reason
    assert not (tmp_path / "known_hosts").exists()
    assert store.find("node1")["state"] == "profiled"


def test_the_installers_error_fails_the_node_with_its_message(store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab, fail="%post failed: exit 3 in line 12")
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert res.status == "failed"
    assert "%post failed: exit 3 in line 12" in res.reason
    row = store.find("node1")
    assert row["state"] == "profiled"
    assert [e for e in store.events(row["key"]) if e.action == "failed"]


def test_an_install_that_never_calls_back_times_out(store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab, stop_after_kickstart=True)
    opts = ProvisionOptions(via="pxe", deadline_s=2, ssh_wait_s=5, poll_s=0.2)
    t0 = time.monotonic()
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path), opts, store=store)
    assert res.status == "timeout"
    assert "kickstart-fetched" in res.reason
    assert time.monotonic() - t0 < 15
    # a failed or timed-out node starts over on the next run
    machine2 = ScriptedMachine(boot, hostlab)
    [res2] = provision(["node1"], _inputs(boot, hostlab, machine2, tmp_path), OPTS,
                       store=store)
    assert res2.status == "installed"
    assert machine2.powered == ["node1"]


def test_a_run_killed_mid_install_is_followed_not_restarted(store, boot, hostlab, tmp_path):
    """The first run registered the install and powered the machine, then died: the
    re-run follows the install in the boot service and never powers the machine again."""
    first = ScriptedMachine(boot, hostlab)
    inputs = _inputs(boot, hostlab, first, tmp_path)
    from metalctl.provision.stage import prepare

    [prep] = prepare(["node1"], inputs, OPTS, store)
    boot.add_install("node1", prep.node.mac, prep.kickstart, inputs.boot_files, 60)
    first.network_boot_once(prep.node)          # ... and here the first run was killed
    second = ScriptedMachine(boot, hostlab)
    [res] = provision(["node1"], _inputs(boot, hostlab, second, tmp_path), OPTS, store=store)
    assert res.status == "installed", res.reason
    assert second.powered == []
    assert "resumed" in [e.action for e in store.events(store.find("node1")["key"])]


def test_a_bad_kickstart_is_refused_before_any_power_action(store, boot, hostlab, tmp_path):
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    for p in (REPO / "kickstart").glob("_*.j2"):
        (tpl / p.name).write_text(p.read_text())
    (tpl / "broken.ks.j2").write_text('{% extends "_kvm-host.ks.j2" %}\n'
                                      "{% block finish %}\nbogus --now\n{{ super() }}\n"
                                      "{% endblock %}\n")
    machine = ScriptedMachine(boot, hostlab)
    inputs = _inputs(boot, hostlab, machine, tmp_path, template_dirs=[tpl])
    inputs.template = "broken"
    with pytest.raises(InputError) as err:
        provision(["node1", "node2"], inputs, OPTS, store=store)
    assert "broken" in str(err.value)
    assert "node1" in str(err.value)
    assert re.search(r":\d+: bogus --now", str(err.value))
    assert err.value.line
    assert machine.powered == []
    assert boot.install("node1") is None


def test_unknown_node_and_unprofiled_node_are_input_errors(store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab)
    with pytest.raises(InputError, match="no such node"):
        provision(["nope"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    rec = _record(9)
    store.save_discovered(rec)
    key = rec.key
    store.set_state(key, Lifecycle.ENROLLED, name="node9")
    with pytest.raises(InputError, match="no profile plan"):
        provision(["node9"], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    assert machine.powered == []


def test_check_renders_and_masks_without_touching_anything(store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab)
    opts = ProvisionOptions(via="pxe", check=True)
    res = provision(["node1", "node2"], _inputs(boot, hostlab, machine, tmp_path), opts,
                    store=store)
    assert [r.status for r in res] == ["checked", "checked"]
    assert "rootpw --iscrypted" in res[0].kickstart
    assert "$6$" not in res[0].kickstart
    assert ROOT_PW not in res[0].kickstart
    assert machine.powered == []
    assert boot.install("node1") is None


def test_unsafe_secret_values_never_reach_results(store, boot, hostlab, tmp_path):
    machine = ScriptedMachine(boot, hostlab)
    [res] = provision(["node1"], _inputs(boot, hostlab, machine, tmp_path),
                      ProvisionOptions(via="pxe", check=True), store=store)
    assert Secret(ROOT_PW).reveal() not in str(res.to_dict())


def test_cli_check_prints_masked_kickstarts_and_bad_input_exits_3(store, tmp_path, capsys,
                                                                  monkeypatch):
    from metalctl.cli.main import main

    monkeypatch.setenv("KS_SAMPLE_ROOT_PASSWORD", ROOT_PW)
    site = REPO / "tests" / "samples" / "kickstart" / "site.yaml"
    db = str(tmp_path / "store.db")
    code = main(["provision", "node1", "node2", "--check", "--site", str(site),
                 "--store", db, "--boot-dir", str(tmp_path / "b")])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count("rootpw --iscrypted") == 2
    assert ROOT_PW not in out
    assert "$6$" not in out
    assert store.find("node1")["state"] == "profiled"
    # an unknown node, a bad --address, no boot service: input errors, exit 3
    assert main(["provision", "nope", "--check", "--site", str(site), "--store", db]) == 3
    assert main(["provision", "node1", "--site", str(site), "--store", db,
                 "--address", "node1"]) == 3
    assert main(["provision", "node1", "--site", str(site), "--store", db]) == 3


def test_head_answers_like_get_without_using_the_ticket_up(boot, tmp_path):
    """Ironic's image service HEADs every URL (ks_template among them) before it GETs."""
    ticket = boot.add_install("node7", "52:54:00:00:07:07", "ks @@METALCTL_TOKEN@@\n",
                              BootFiles("vmlinuz", "initrd.img"), 60, fetcher="ironic")
    url = f"{boot.url}/ks/node7?ticket={ticket.reveal()}"
    for _ in range(3):
        head = requests.head(url, timeout=5)
        assert head.status_code == 200
        assert head.content == b""
        assert int(head.headers["Content-Length"]) == len("ks \n") + 43  # with its token
    assert requests.head(f"{boot.url}/ks/node7?ticket=wrong-ticket-value-00000000000000",
                         timeout=5).status_code == 403
    text = requests.get(url, timeout=5).text
    assert re.fullmatch(r"ks [A-Za-z0-9_-]{43}\n", text)
    assert ticket.reveal() not in text  # the callback token is a new secret
    assert requests.head(url, timeout=5).status_code == 403      # used up by the GET
    assert requests.get(url, timeout=5).status_code == 403       # replayed
    f = requests.head(f"{boot.url}/files/vmlinuz", timeout=5)
    assert f.status_code == 200
    assert f.headers["Content-Length"] == "6"
    assert f.content == b""
    assert requests.head(f"{boot.url}/boot/52-54-00-00-07-07.ipxe", timeout=5).status_code \
        == 404  # a HEAD never hands out an install


def test_two_machines_with_one_name_are_refused_before_any_power_action(
        store, boot, hostlab, tmp_path):
    """Two BMCs reporting the same system name, neither enrolled under its own name:
    both would be installed, called back and trusted as one host."""
    for i in (5, 6):
        rec = DiscoveryRecord(address=f"127.0.0.{i}", port=443, protocol=Protocol.REDFISH,
                              status=Status.OK, scheme="https", system_id="System.Embedded.1",
                              name="r650", manufacturer="Dell",
                              hardware=Hardware(nics=(NicFacts(mac=f"52:54:00:00:08:{i:02x}"),)))
        store.save_discovered(rec)
        store.set_state(rec.key, Lifecycle.PROFILED)
        store.put_data(rec.key, "plan", store.get_data(store.find("node1")["key"], "plan"))
    keys = [r["key"] for r in store.nodes() if r["record"]["address"] in ("127.0.0.5",
                                                                          "127.0.0.6")]
    machine = ScriptedMachine(boot, hostlab)
    with pytest.raises(InputError) as err:
        provision(keys, _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    message = str(err.value)
    assert message.startswith("node r650: name: ")
    assert all(k in message for k in keys)
    assert "BMC 127.0.0.5" in message
    assert "BMC 127.0.0.6" in message
    assert "name_template" in message
    assert machine.powered == []
    assert boot.install("r650") is None
    # one of them alone is refused too: the other is in the store under the same name
    with pytest.raises(InputError, match="name_template"):
        provision(keys[:1], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    # case does not tell host names apart either
    store.set_state(keys[1], Lifecycle.PROFILED, name="R650")
    with pytest.raises(InputError, match="name_template"):
        provision(keys[:1], _inputs(boot, hostlab, machine, tmp_path), OPTS, store=store)
    # named apart (as enrollment with a per-machine template does): accepted
    store.set_state(keys[1], Lifecycle.PROFILED, name="r650-b")
    [res] = provision(keys[:1], _inputs(boot, hostlab, machine, tmp_path),
                      ProvisionOptions(via="pxe", check=True), store=store)
    assert res.status == "checked"
    from metalctl.cli.main import main

    store.set_state(keys[1], Lifecycle.PROFILED, name="r650")
    site = REPO / "tests" / "samples" / "kickstart" / "site.yaml"
    assert main(["provision", *keys, "--check", "--site", str(site), "--store",
                 str(tmp_path / "store.db"), "--boot-dir", str(tmp_path / "b")]) == 3


def test_a_node_without_a_plan_may_be_installed_plain_when_asked(store, boot, hostlab,
                                                                 tmp_path):
    rec = _record(8)
    store.save_discovered(rec)
    store.set_state(rec.key, Lifecycle.ENROLLED, name="node8")
    machine = ScriptedMachine(boot, hostlab)
    [res] = provision(["node8"], _inputs(boot, hostlab, machine, tmp_path),
                      ProvisionOptions(via="pxe", check=True, require_plan=False), store=store)
    assert res.status == "checked"
    assert any("no profile plan" in w for w in res.warnings)
    assert "isolcpus" not in res.kickstart
