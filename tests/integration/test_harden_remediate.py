"""harden closes what audit finds, against real SSH test hosts (namespaces with their own
/etc and sshd, on 10.205.0.0/24): sshd through one drop-in proven by a second login,
sysctls applied only where the setting belongs to the host, audit rules persisted; then
an audit with the lab waivers has no failure left."""

from __future__ import annotations

from pathlib import Path

import pytest

from metalctl import harden, hosts
from metalctl.audit import run as audit
from metalctl.audit import waivers
from metalctl.data.paths import data_dir
from metalctl.pki import SitePKI
from metalctl.rules import catalogue
from metalctl.rules.catalogue import Rule
from metalctl_lab.hosts import HostLab

from .sshhosts import running, site_pki, spec, ssh_policy

RULES = catalogue.load()
DROPIN = "/etc/ssh/sshd_config.d/50-metalctl.conf"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from running(tmp_path_factory, "remediate-hosts", 205, (1, 2))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return site_pki(tmp_path_factory, "remediate-pki", "remediate site")


def hopts(lab: HostLab, pki: SitePKI | None = None) -> harden.HardenOptions:
    return harden.HardenOptions(site=hosts.load_site(None), pki=pki, **ssh_policy(lab))


def fresh(lab: HostLab, i: int) -> None:
    lab.reset(i)
    lab.start(i)


def machine_sysctl(key: str) -> str:
    """This machine's own value (the lab hosts share its kernel)."""
    return Path("/proc/sys", *key.split(".")).read_text().strip()


def host_sh(lab: HostLab, i: int, command: str) -> str:
    out = lab.exec(i, command)
    assert out.returncode == 0, out.stderr
    return out.stdout


def ssh_tree(lab: HostLab, i: int) -> str:
    return host_sh(lab, i, "find /etc/ssh -type f -print0 | sort -z | xargs -0 sha256sum")


def sysctl_rule(rid: str, key: str, value: str) -> Rule:
    return Rule(id=rid, title=f"{key} = {value}", rationale="test", severity="low",
                platforms=("debian",), check={"kind": "sysctl", "key": key, "value": value},
                references={"upstream": ["test"]})


def sshd_rule(rid: str, key: str, allowed: list[str]) -> Rule:
    return Rule(id=rid, title=f"{key} {allowed}", rationale="test", severity="low",
                platforms=("debian",), check={"kind": "sshd", "key": key, "allowed": allowed},
                references={"upstream": ["test"]})


def test_harden_then_audit_leaves_only_what_the_lab_lacks(lab, pki):
    fresh(lab, 1)
    kernel_keys = sorted({r.check["key"] for r in RULES if r.kind == "sysctl"
                          and not r.check["key"].startswith("net.")
                          and Path("/proc/sys", *r.check["key"].split(".")).exists()})
    machine_before = {k: machine_sysctl(k) for k in kernel_keys}
    assert host_sh(lab, 1, "sysctl -n net.ipv4.conf.all.accept_redirects").strip() == "1"

    first = harden.harden([spec(lab, 1)], RULES, hopts(lab, pki))[0]
    assert first.status == "hardened", first.error
    assert {f"file {DROPIN}", "file /etc/sysctl.d/50-metalctl.conf",
            "file /etc/audit/rules.d/50-metalctl.rules"} <= set(first.changed)
    out = {o.rule: o for o in first.outcomes}
    # sshd: effective after the reload (re-gathered), the old session never closed
    for rid in ("SSH-002", "SSH-004", "SSH-005", "SSH-009"):
        assert out[rid].status == "compliant", out[rid]
    assert "PasswordAuthentication no" in host_sh(lab, 1, f"cat {DROPIN}")
    # net.* of the host's own network namespace: applied there, this machine's untouched
    assert out["KRN-008"].status == "compliant"
    assert host_sh(lab, 1, "sysctl -n net.ipv4.conf.all.accept_redirects").strip() == "0"
    # kernel-global keys: persisted, never applied; deferred where the machine differs
    persisted = host_sh(lab, 1, "cat /etc/sysctl.d/50-metalctl.conf")
    assert {k: machine_sysctl(k) for k in kernel_keys} == machine_before
    for r in RULES:
        key = r.check.get("key", "")
        if r.kind == "sysctl" and key in kernel_keys and out[r.id].status != "compliant":
            assert out[r.id].status == "deferred", out[r.id]
            assert "shares a kernel it does not own" in out[r.id].detail
            assert f"{key} = " in persisted
    assert out["AUD-003"].status == "deferred"  # no kernel audit in a namespace
    assert "-w /etc/libvirt/ -p wa -k virt" in host_sh(
        lab, 1, "cat /etc/audit/rules.d/50-metalctl.rules")

    again = harden.harden([spec(lab, 1)], RULES, hopts(lab, pki))[0]
    assert (again.status, again.changed) == ("compliant", [])

    known = {r.id for r in RULES}
    lab_waivers = waivers.load(data_dir("hardening") / "waivers.lab.yaml", known)
    aopts = audit.AuditOptions(site=hosts.load_site(None), pki=pki, key_file=lab.client_key,
                               known_hosts=lab.known_hosts, waivers=lab_waivers, record=False)
    report = audit.audit([spec(lab, 1)], RULES, aopts)
    results = report.results()
    assert [(r.rule, r.evidence.actual) for r in results if r.status in ("fail", "error")] == []
    waived = {r.rule for r in results if r.status == "waived"}
    assert waived, "the lab lacks LSM, KVM and audit: some rule must be waived"
    assert {"SSH-002", "SSH-004", "KRN-008", "AUD-002", "KRN-001"}.isdisjoint(waived)
    # a waiver never hides a pass: every waived rule failed in this lab for its reason
    assert waived <= {w.rule for w in lab_waivers}


def test_kernel_global_sysctl_is_not_applied_on_a_namespaced_host(lab):
    fresh(lab, 2)
    mine = machine_sysctl("kernel.kptr_restrict")
    other = "1" if mine != "1" else "2"
    net_mine = machine_sysctl("net.ipv4.tcp_syncookies")
    rules = [sysctl_rule("TST-101", "kernel.kptr_restrict", other),
             sysctl_rule("TST-102", "net.ipv4.tcp_syncookies", "2")]
    res = harden.harden([spec(lab, 2)], rules, hopts(lab))[0]
    assert res.status == "hardened", res.error
    out = {o.rule: o for o in res.outcomes}
    assert machine_sysctl("kernel.kptr_restrict") == mine  # this machine unchanged
    assert out["TST-101"].status == "deferred"
    assert any("kernel.kptr_restrict" in x for x in res.reboot_required)
    assert out["TST-102"].status == "compliant"  # the host's own network namespace
    assert host_sh(lab, 2, "sysctl -n net.ipv4.tcp_syncookies").strip() == "2"
    assert machine_sysctl("net.ipv4.tcp_syncookies") == net_mine
    persisted = host_sh(lab, 2, "cat /etc/sysctl.d/50-metalctl.conf")
    assert f"kernel.kptr_restrict = {other}\n" in persisted
    assert "net.ipv4.tcp_syncookies = 2\n" in persisted
    again = harden.harden([spec(lab, 2)], rules, hopts(lab))[0]
    assert (again.status, again.changed) == ("compliant", [])


def test_a_value_sshd_rejects_is_restored_and_reported(lab):
    fresh(lab, 2)
    before = ssh_tree(lab, 2)
    rules = [sshd_rule("TST-201", "ciphers", ["no-such-cipher"]),
             *catalogue.select(RULES, ids=["SSH-004"])]
    res = harden.harden([spec(lab, 2)], rules, hopts(lab))[0]
    assert res.status == "failed"
    assert "sshd -t rejected" in (res.error or "")
    assert "Bad SSH2 cipher spec 'no-such-cipher'" in (res.error or "")
    out = {o.rule: o for o in res.outcomes}
    assert out["TST-201"].status == "error"
    assert "no-such-cipher" in out["TST-201"].detail
    assert out["SSH-004"].status == "change"  # not applied: the batch was restored
    assert ssh_tree(lab, 2) == before  # the drop-in is gone, nothing else changed
    assert host_sh(lab, 2, "echo alive").strip() == "alive"


def test_a_config_that_locks_the_operator_out_is_restored(lab):
    fresh(lab, 2)
    before = ssh_tree(lab, 2)
    lockout = [sshd_rule("TST-301", "allowusers", ["nobody"])]
    res = harden.harden([spec(lab, 2)], lockout, hopts(lab))[0]
    assert res.status == "failed"
    error = res.error or ""
    assert "second SSH login failed" in error
    assert "restored and reloaded, a new login works again" in error
    assert ssh_tree(lab, 2) == before
    assert host_sh(lab, 2, "sshd -T -C user=root,host=x,addr=127.0.0.1 | grep -c "
                           "'^allowusers' || true").strip() == "0"
    assert host_sh(lab, 2, "echo alive").strip() == "alive"


def test_settings_sshd_reads_before_the_drop_in_are_superseded(lab):
    """sshd takes the first value: a main config that sets the key above its Include, and a
    drop-in sorting before ours (cloud images ship 50-cloud-init.conf), would win."""
    fresh(lab, 2)
    host_sh(lab, 2, "sed -i '1i PasswordAuthentication yes' /etc/ssh/sshd_config && "
                    "echo 'X11Forwarding yes' > /etc/ssh/sshd_config.d/10-cloud.conf")
    rules = catalogue.select(RULES, ids=["SSH-002", "SSH-004"])
    res = harden.harden([spec(lab, 2)], rules, hopts(lab))[0]
    assert res.status == "hardened", res.error
    effective = host_sh(lab, 2, "sshd -T -C user=root,host=x,addr=127.0.0.1")
    assert "passwordauthentication no" in effective
    assert "x11forwarding no" in effective
    main = host_sh(lab, 2, "cat /etc/ssh/sshd_config")
    assert main.splitlines()[0] == (f"# metalctl: superseded by {DROPIN}: "
                                    "PasswordAuthentication yes")
    assert host_sh(lab, 2, "cat /etc/ssh/sshd_config.d/10-cloud.conf").startswith("# metalctl")
    backups = host_sh(lab, 2, "ls -R /var/backups/metalctl/etc/ssh")
    assert "sshd_config." in backups
    assert "10-cloud.conf." in backups
    again = harden.harden([spec(lab, 2)], rules, hopts(lab))[0]
    assert (again.status, again.changed) == ("compliant", [])
