"""metalctl harden against real SSH hosts with their own /etc (network namespaces,
overlay root filesystems, the hosts' own sshd) and a real libvirtd serving TLS in them.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from metalctl import harden, hosts
from metalctl.pki import SitePKI
from metalctl.poll import wait_for
from metalctl.rules import catalogue as rules_mod
from metalctl_lab.hosts import HostLab

from .clirun import run as cli
from .sshhosts import running, site_pki, spec, ssh_policy

RULES = rules_mod.load()
SITE_OVERRIDES = """
repositories:
  dnf:
    - id: site-baseos
      gpgkey: file:///etc/pki/rpm-gpg/RPM-GPG-KEY-site
  apt:
    - uri: http://deb.debian.org/debian
      signed_by: /usr/share/keyrings/debian-archive-keyring.gpg
"""
SEEDED_REPO = """[site-baseos]
name=Site BaseOS
baseurl=https://mirror.site.example/baseos
gpgcheck=0
enabled=1

[vendor-extras]
name=Undeclared extras
baseurl=http://extras.example/el9
gpgcheck=1
enabled=1
"""


@pytest.fixture(scope="module")
def hostlab(tmp_path_factory):
    yield from running(tmp_path_factory, "hosts", 201, (1, 2, 3))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return site_pki(tmp_path_factory, "pki", "metalctl test site")


def options(lab, pki, tmp_path, **kw) -> harden.HardenOptions:
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE_OVERRIDES)
    return harden.HardenOptions(site=hosts.load_site(site_file), pki=pki, **ssh_policy(lab),
                                **kw)


def etc_sums(lab: HostLab, i: int) -> str:
    out = lab.exec(i, "find /etc /var/backups -type f -print0 | sort -z | "
                      "xargs -0 sha256sum; stat -c '%n %a %U %G' /etc/libvirt/*.conf")
    assert out.returncode == 0, out.stderr
    return out.stdout


def seed_repositories(lab: HostLab, i: int) -> None:
    r = lab.exec(i, "mkdir -p /etc/yum.repos.d && cat > /etc/yum.repos.d/site.repo <<'EOF'\n"
                    f"{SEEDED_REPO}EOF\n"
                    "echo 'deb [trusted=yes] http://deb.debian.org/debian bookworm-updates main'"
                    " > /etc/apt/sources.list.d/updates.list; "
                    "echo 'deb http://ppa.untrusted.example/x bookworm main'"
                    " > /etc/apt/sources.list.d/extra.list")
    assert r.returncode == 0, r.stderr


def test_check_changes_nothing_then_apply_converges_and_fixes_repos(hostlab, pki, tmp_path):
    hostlab.reset(1)
    hostlab.start(1)
    seed_repositories(hostlab, 1)
    hosts = [spec(hostlab, 1), spec(hostlab, 2)]
    before = etc_sums(hostlab, 1)
    checked = harden.harden(hosts[:1], RULES, options(hostlab, pki, tmp_path, check=True))
    assert checked[0].status == "would-change"
    assert "+gpgcheck=1" in checked[0].diff
    assert "+listen_tls = 1" in checked[0].diff
    assert "BEGIN PRIVATE KEY" not in checked[0].diff  # keys never shown
    assert etc_sums(hostlab, 1) == before, "check mode changed the host"

    first = harden.harden(hosts, RULES, options(hostlab, pki, tmp_path))
    assert [r.status for r in first] == ["hardened", "hardened"], [r.error for r in first]
    assert "file /etc/yum.repos.d/site.repo" in first[0].changed
    repo = hostlab.exec(1, "cat /etc/yum.repos.d/site.repo").stdout
    assert "gpgcheck=1" in repo
    assert "repo_gpgcheck=1" in repo
    assert "sslverify=1" in repo
    assert "gpgkey=file:///etc/pki/rpm-gpg/RPM-GPG-KEY-site" in repo
    # the undeclared repository is disabled, not deleted, and reported
    assert repo.count("enabled=0") == 1
    assert "[vendor-extras]" in repo
    outcome = {o.rule: o for o in first[0].outcomes}
    assert outcome["PKG-006"].status == "compliant"  # after apply: re-evaluated state
    apt = hostlab.exec(1, "cat /etc/apt/sources.list.d/*.list").stdout
    assert "[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" in apt
    assert "trusted=yes" not in apt
    assert "# metalctl: disabled undeclared source: deb http://ppa.untrusted" in apt
    # key files 0600 (libvirt) / 0640 root:libvirt-qemu (QEMU); backups outside /etc
    modes = hostlab.exec(1, "stat -c '%a %U %G' /etc/pki/libvirt/private/serverkey.pem "
                            "/etc/pki/qemu/server-key.pem; ls -R /var/backups/metalctl").stdout
    assert modes.splitlines()[:2] == ["600 root root", "640 root libvirt-qemu"]
    assert "libvirtd.conf." in modes
    # effective state: TLS on the management address, no plain TCP
    listening = hostlab.exec(1, "ss -ltnH").stdout
    assert f"{hostlab.address(1)}:16514" in listening
    assert ":16509" not in listening
    # deferred, not pretended: the lab kernel has no LSM
    assert outcome["SEL-006"].status == "deferred"
    assert any("apparmor not active" in x for x in first[0].reboot_required)

    # the firewall (FWL-002, FWL-004): loaded in each host's own network namespace
    assert outcome["FWL-002"].status == "compliant", outcome["FWL-002"]
    assert "command FWL-002" in first[0].changed
    assert outcome["FWL-003"].status == "notapplicable"  # no systemd: nothing to enable
    assert outcome["FWL-004"].status == "compliant"
    ruleset = hostlab.exec(2, "nft list ruleset").stdout
    assert "policy drop;" in ruleset
    assert f"ip daddr {hostlab.address(2)} tcp dport {{ 5900-5999, 16514, 49152-49215 }}" \
        in ruleset
    assert_firewall_refuses_outside_the_plan(hostlab, 1, 2)

    second = harden.harden(hosts, RULES, options(hostlab, pki, tmp_path))
    assert [(r.status, r.changed) for r in second] == [("compliant", []), ("compliant", [])]


def assert_firewall_refuses_outside_the_plan(lab: HostLab, client: int, server: int) -> None:
    """From one hardened host to another: libvirt TLS answers, a listener on a port
    outside the plan does not (it answers on the server itself: the firewall drops it)."""
    addr = lab.address(server)
    listen = ("nohup python3 -c 'import socket, time; s = socket.socket(); "
              "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
              "s.bind((\"0.0.0.0\", 8081)); s.listen(); time.sleep(60)' "
              "</dev/null >/dev/null 2>&1 & sleep 0.5")
    assert lab.exec(server, listen).returncode == 0

    def connect(i: int, port: int) -> int:
        probe = f"timeout 3 bash -c 'exec 3<>/dev/tcp/{addr}/{port}'; echo rc=$?"
        out = lab.exec(i, probe).stdout
        return int(out.rsplit("rc=", 1)[1])

    assert connect(server, 8081) == 0, "the listener outside the plan is not up"
    assert connect(client, 16514) == 0, "libvirt TLS not reachable from the other host"
    assert connect(client, 8081) != 0, "a port outside the plan is reachable"


def virsh(uri: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["virsh", "-c", uri, "hostname"], capture_output=True, text=True,
                          timeout=60, check=False)


def pkipath(tmp: Path, ca: Path, cert: Path, key: Path) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, tmp / "cacert.pem")
    shutil.copy(cert, tmp / "clientcert.pem")
    shutil.copy(key, tmp / "clientkey.pem")
    return tmp


def test_libvirt_tls_accepts_site_hosts_and_refuses_others(hostlab, pki, tmp_path):
    hosts = [spec(hostlab, 1), spec(hostlab, 2)]
    res = harden.harden(hosts, RULES, options(hostlab, pki, tmp_path))
    assert {r.status for r in res} <= {"hardened", "compliant"}, [r.error for r in res]
    target = f"qemu+tls://{hostlab.address(2)}/system"
    h1 = pki.host("h1")
    good = pkipath(tmp_path / "good", pki.ca_cert_path, h1.client_cert, h1.client_key)
    ok = virsh(f"{target}?pkipath={good}")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "h2"
    # same CA, but a DN outside tls_allowed_dn_list
    intruder = pki.issue("intruder", [], ["10.201.0.99"])
    bad_dn = pkipath(tmp_path / "dn", pki.ca_cert_path, intruder.client_cert,
                     intruder.client_key)
    assert virsh(f"{target}?pkipath={bad_dn}").returncode != 0
    # a certificate from another CA (the client trusts both CAs, so only the server decides)
    rogue = SitePKI(tmp_path / "rogue", organization="metalctl test site")
    rogue.init()
    forged = rogue.issue("h1", [], [])
    other = pkipath(tmp_path / "other", pki.ca_cert_path, forged.client_cert, forged.client_key)
    (other / "cacert.pem").write_text(pki.ca_cert_path.read_text()
                                      + rogue.ca_cert_path.read_text())
    assert virsh(f"{target}?pkipath={other}").returncode != 0


def test_interrupted_run_is_reported_and_rerun_converges(hostlab, pki, tmp_path):
    hostlab.reset(3)
    hostlab.start(3)
    host = [spec(hostlab, 3)]
    result: list = []
    worker = threading.Thread(target=lambda: result.extend(harden.harden(
        host, RULES, options(hostlab, pki, tmp_path, pace_s=0.4))))
    worker.start()
    # kill once the apply has written a first file (a fixed sleep raced the connect on a
    # loaded machine): a few files written, most not
    wait_for(lambda: not worker.is_alive() or hostlab.exec(
        3, "ls /etc/pki/qemu 2>/dev/null | wc -l").stdout.strip() not in ("", "0"),
        timeout_s=120, interval_s=0.2, what="h3: a first file written", ready=bool)
    hostlab.kill(3)
    worker.join(60)
    assert result[0].status == "dropped", result[0]
    assert "re-run" in (result[0].error or "") or "connection" in (result[0].error or "")
    hostlab.start(3)  # same disk state, the host came back
    partial = hostlab.exec(3, "ls /etc/pki/qemu 2>/dev/null | wc -l").stdout.strip()
    assert partial != "5", "the run was not interrupted before the end"
    again = harden.harden(host, RULES, options(hostlab, pki, tmp_path))
    assert again[0].status == "hardened", again[0].error
    assert harden.harden(host, RULES, options(hostlab, pki, tmp_path))[0].status == "compliant"


def test_unknown_host_key_is_refused_and_others_go_on(hostlab, pki, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("".join(line + "\n" for line in hostlab.known_hosts.read_text().splitlines()
                             if not line.startswith(hostlab.address(2) + " ")))
    opts = options(hostlab, pki, tmp_path, check=True)
    opts.known_hosts = known
    res = harden.harden([spec(hostlab, 1), spec(hostlab, 2)], RULES, opts)
    by = {r.host: r for r in res}
    assert by["h2"].status in ("failed", "unreachable")
    assert "host key not in" in by["h2"].error
    assert by["h1"].status in ("compliant", "would-change")


def test_cli_check_apply_and_certificate_renewal(hostlab, tmp_path):
    inv = tmp_path / "hosts.yaml"
    inv.write_text("hosts:\n" + "".join(
        f"  - {{name: h{i}, ssh: 'root@{hostlab.address(i)}', mgmt_address: "
        f"'{hostlab.address(i)}'}}\n" for i in (1, 2)))
    site = tmp_path / "site.yaml"
    site.write_text(SITE_OVERRIDES)
    env = {"METALCTL_PKI_DIR": str(tmp_path / "pki"), "METALCTL_STORE": str(tmp_path / "s.db"),
           "COLUMNS": "200"}
    common = ["--inventory", str(inv), "--site", str(site), "--ssh-key", str(hostlab.client_key),
              "--known-hosts", str(hostlab.known_hosts)]
    cli(["pki", "init"], env, 0)
    check = cli(["harden", *common, "--check"], env, 2)  # a new CA: certificates differ
    assert "/etc/pki/CA/cacert.pem" in check.stdout
    cli(["harden", *common, "-o", "json"], env, 0)
    again = cli(["harden", *common, "-o", "json"], env, 0)
    assert '"changed": []' in again.stdout
    renewed = cli(["pki", "renew", "--within-days", "400", "-o", "json"], env, 0)
    assert '"host": "h1"' in renewed.stdout
    after = cli(["harden", *common, "-o", "json", "--tag", "pki"], env, 0)
    assert "/etc/pki/libvirt/servercert.pem" in after.stdout
    for out in (check, again, after):  # keys travel to hosts, never into output or logs
        assert "PRIVATE KEY" not in out.stdout + out.stderr
    assert "/etc/pki/CA/cacert.pem" not in after.stdout  # only what was reissued
    pk = Path(env["METALCTL_PKI_DIR"])
    good = pkipath(tmp_path / "renewed", pk / "ca" / "cacert.pem",
                   pk / "hosts" / "h1" / "clientcert.pem", pk / "hosts" / "h1" / "clientkey.pem")
    assert virsh(f"qemu+tls://{hostlab.address(2)}/system?pkipath={good}").returncode == 0


def test_non_root_user_with_sudo(hostlab, pki, tmp_path):
    hostlab.reset(4)
    hostlab.start(4)
    setup = hostlab.exec(4, "useradd -m -s /bin/sh ops && install -d -m 700 -o ops "
                            "/home/ops/.ssh && install -m 600 -o ops /root/.ssh/authorized_keys "
                            "/home/ops/.ssh/ && echo 'ops ALL=(root) NOPASSWD: ALL' > "
                            "/etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops")
    assert setup.returncode == 0, setup.stderr
    host = [hosts.HostSpec(name="h4", ssh=f"ops@{hostlab.address(4)}",
                            mgmt_address=hostlab.address(4))]
    without = harden.harden(host, RULES, options(hostlab, pki, tmp_path))
    assert without[0].status == "failed"  # not root, no sudo: refused, nothing half-done
    res = harden.harden(host, RULES, options(hostlab, pki, tmp_path, sudo=True))
    assert res[0].status == "hardened", res[0].error
    owner = hostlab.exec(4, "stat -c '%U %a' /etc/pki/libvirt/private/serverkey.pem").stdout
    assert owner.strip() == "root 600"
    again = harden.harden(host, RULES, options(hostlab, pki, tmp_path, sudo=True))
    assert again[0].status == "compliant"


def test_systemd_host_socket_activation(hostlab, pki, tmp_path):
    """Real systemd as PID 1 (nspawn): socket units instead of --listen, the TLS socket
    bound to the management address by a drop-in, the TCP socket disabled."""
    hostlab.reset(5)
    hostlab.start(5, systemd=True)
    host = [spec(hostlab, 5)]
    try:
        res = harden.harden(host, RULES, options(hostlab, pki, tmp_path))
        assert res[0].status == "hardened", res[0].error
        out = {o.rule: o.status for o in res[0].outcomes}
        assert out["LVT-003"] == "compliant"  # re-evaluated after apply
        assert out["LVT-004"] == "notapplicable"  # sysv-only
        state = hostlab.exec(5, "ss -ltnH; systemctl is-enabled libvirtd-tls.socket "
                                "libvirtd-tcp.socket").stdout
        assert f"{hostlab.address(5)}:16514" in state
        assert "*:16514" not in state
        assert "[::]:16514" not in state
        assert state.split()[-2:] == ["enabled", "disabled"]
        h5 = pki.host("h5")
        good = pkipath(tmp_path / "sd", pki.ca_cert_path, h5.client_cert, h5.client_key)
        ok = virsh(f"qemu+tls://{hostlab.address(5)}/system?pkipath={good}")
        assert ok.returncode == 0, ok.stderr
        again = harden.harden(host, RULES, options(hostlab, pki, tmp_path))
        assert (again[0].status, again[0].changed) == ("compliant", [])
    finally:
        hostlab.kill(5)  # SIGTERM: the container powers off
