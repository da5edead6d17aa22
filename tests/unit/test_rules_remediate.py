"""What harden now remediates, planned on host facts (no host needed): the sshd drop-in
and its Include order, sysctls by kernel ownership, audit rules, boot arguments."""

from __future__ import annotations

from typing import Any

import pytest

from metalctl.harden.run import SshdFailure
from metalctl.rules import apply, edit, engine, gather
from metalctl.rules.catalogue import Rule
from metalctl.rules.kinds import kernel, sshd
from metalctl.rules.plan import FileChange

SITE: dict[str, Any] = {"lsm": "auto"}
DEBIAN_SSHD = ("Include /etc/ssh/sshd_config.d/*.conf\n\nKbdInteractiveAuthentication no\n"
               "UsePAM yes\nX11Forwarding yes\nSubsystem sftp /usr/lib/openssh/sftp-server\n")
SSHD_T = ("permitrootlogin without-password\npasswordauthentication yes\nx11forwarding yes\n"
          "maxauthtries 6\nclientaliveinterval 0\n"
          "ciphers chacha20-poly1305@openssh.com,aes256-cbc,aes128-ctr\n")


def rule(rid: str, check: dict[str, Any]) -> Rule:
    return Rule(id=rid, title=rid, rationale="r", severity="medium", platforms=("debian", "rhel"),
                check=check, references={"upstream": ["x"]})


def facts(files: dict[str, str] | None = None, **kw: Any) -> gather.HostFacts:
    f = gather.HostFacts(os_id="debian", family="debian", init="sysv", pkg={"apt"})
    f.files = {p: gather.FileFact(True, "644", "root", "root", None, c)
               for p, c in (files or {}).items()}
    for k, v in kw.items():
        setattr(f, k, v)
    return f


def ctx(host: str = "c1", site: dict[str, Any] | None = None) -> engine.Context:
    return engine.Context(host=host, mgmt_address="192.0.2.10", allowed_dns=[],
                          site=site or SITE)


SSH_RULES = [
    rule("TST-001", {"kind": "sshd", "key": "passwordauthentication", "allowed": ["no"]}),
    rule("TST-002", {"kind": "sshd", "key": "x11forwarding", "allowed": ["no"]}),
    rule("TST-003", {"kind": "sshd", "key": "maxauthtries", "max": 4}),
    rule("TST-004", {"kind": "sshd", "key": "clientaliveinterval", "min": 1, "set": 300}),
    rule("TST-005", {"kind": "sshd", "key": "ciphers", "forbid": "cbc|3des"}),
    rule("TST-006", {"kind": "sshd", "key": "permitrootlogin",
                     "allowed": ["prohibit-password", "without-password", "no"]}),
]


def test_sshd_rules_are_batched_into_one_drop_in_and_guarded():
    plan = engine.evaluate(SSH_RULES, facts({sshd.MAIN: DEBIAN_SSHD},
                                            probes={"sshd-T": SSHD_T}), ctx())
    status = {o.rule: o.status for o in plan.outcomes}
    assert status == {"TST-001": "change", "TST-002": "change", "TST-003": "change",
                      "TST-004": "change", "TST-005": "change", "TST-006": "compliant"}
    assert set(plan.files) == {sshd.DROPIN}  # the Include at the top already covers it
    new = plan.files[sshd.DROPIN].new
    assert [ln for ln in new.splitlines() if not ln.startswith("#")] == [
        "PasswordAuthentication no", "X11Forwarding no", "MaxAuthTries 4",
        "ClientAliveInterval 300", "Ciphers chacha20-poly1305@openssh.com,aes128-ctr"]
    assert plan.files[sshd.DROPIN].mode == "644"
    assert sorted(plan.guarded[sshd.DROPIN]) == ["TST-001", "TST-002", "TST-003", "TST-004",
                                                 "TST-005"]
    assert plan.commands == []  # reload and the second login belong to the guarded step


def test_sshd_main_config_without_include_gets_one_for_the_drop_in_only():
    main = "# comment\nPasswordAuthentication yes\nX11Forwarding yes\n"
    plan = engine.evaluate(SSH_RULES[:1], facts({sshd.MAIN: main},
                                                probes={"sshd-T": SSHD_T}), ctx())
    lines = plan.files[sshd.MAIN].new.splitlines()
    # the drop-in alone (not the whole directory, whose files were never read) and first
    assert lines.index(f"Include {sshd.DROPIN}") < lines.index("PasswordAuthentication yes")
    assert sshd.MAIN in plan.guarded


def test_sshd_settings_read_before_the_drop_in_are_commented_out():
    main = "PasswordAuthentication yes\nInclude /etc/ssh/sshd_config.d/*.conf\n" \
           "Match User backup\n  PasswordAuthentication yes\n"
    cloud = "/etc/ssh/sshd_config.d/10-cloud.conf"
    later = "/etc/ssh/sshd_config.d/60-late.conf"
    f = facts({sshd.MAIN: main, cloud: "PasswordAuthentication yes\n",
               later: "PasswordAuthentication yes\n"}, probes={"sshd-T": SSHD_T})
    plan = engine.evaluate(SSH_RULES[:1], f, ctx())
    new_main = plan.files[sshd.MAIN].new.splitlines()
    assert new_main[0].startswith("# metalctl: superseded by")
    assert new_main[0].endswith(": PasswordAuthentication yes")
    assert "  PasswordAuthentication yes" in new_main  # a Match block is not global
    assert plan.files[cloud].new.startswith("# metalctl: superseded by")
    assert later not in plan.files  # read after ours: the first value is ours
    assert set(plan.guarded) == {sshd.MAIN, cloud, sshd.DROPIN}


def test_sshd_rerun_after_apply_changes_nothing():
    first = engine.evaluate(SSH_RULES, facts({sshd.MAIN: DEBIAN_SSHD},
                                             probes={"sshd-T": SSHD_T}), ctx())
    fixed = ("permitrootlogin without-password\npasswordauthentication no\nx11forwarding no\n"
             "maxauthtries 4\nclientaliveinterval 300\n"
             "ciphers chacha20-poly1305@openssh.com,aes128-ctr\n")
    again = engine.evaluate(SSH_RULES, facts(
        {sshd.MAIN: DEBIAN_SSHD, sshd.DROPIN: first.files[sshd.DROPIN].new},
        probes={"sshd-T": fixed}), ctx())
    assert {o.status for o in again.outcomes} == {"compliant"}
    assert again.files == {}
    assert again.guarded == {}


def test_sshd_message_is_attributed_to_the_rule_whose_line_sshd_named():
    plan = engine.evaluate(SSH_RULES, facts({sshd.MAIN: DEBIAN_SSHD},
                                            probes={"sshd-T": SSHD_T}), ctx())
    ids = {r for rs in plan.guarded.values() for r in rs}
    failure = SshdFailure("rejected", "MaxAuthTries 4")
    assert failure.rules(ids, plan) == {"TST-003"}
    assert SshdFailure("second login failed").rules(ids, plan) == ids


# --- sysctl: persisted always, applied only where the setting belongs to the host -------

KRN = rule("TST-010", {"kind": "sysctl", "key": "kernel.kptr_restrict", "allowed": [1, 2]})
NET = rule("TST-011", {"kind": "sysctl", "key": "net.ipv4.conf.all.accept_redirects",
                       "value": 0})
RUNNING = {"sysctl:kernel.kptr_restrict": "kernel.kptr_restrict = 0\n",
           "sysctl:net.ipv4.conf.all.accept_redirects": "net.ipv4.conf.all.accept_redirects = 1\n"}


def test_sysctl_on_a_host_owning_its_kernel_is_persisted_and_applied():
    plan = engine.evaluate([KRN, NET], facts(probes=RUNNING), ctx())
    assert {o.status for o in plan.outcomes} == {"change"}
    text = plan.files[kernel.SYSCTL_FILE].new
    assert "kernel.kptr_restrict = 1\n" in text
    assert "net.ipv4.conf.all.accept_redirects = 0\n" in text
    assert plan.commands == [("TST-010", "sysctl -q -w kernel.kptr_restrict=1"),
                             ("TST-011", "sysctl -q -w net.ipv4.conf.all.accept_redirects=0")]


def test_kernel_global_sysctl_on_a_shared_kernel_is_persisted_and_deferred():
    f = facts(probes=RUNNING, kernel_shared=["pidns: no kthreadd as PID 2"], own_netns=True)
    plan = engine.evaluate([KRN, NET], f, ctx())
    o = {x.rule: x for x in plan.outcomes}
    assert o["TST-010"].status == "deferred"
    assert "shares a kernel it does not own" in o["TST-010"].detail
    assert "kernel.kptr_restrict = 1" in plan.files[kernel.SYSCTL_FILE].new
    # its own network namespace: net.* is this host's and is applied
    assert o["TST-011"].status == "change"
    assert plan.commands == [("TST-011", "sysctl -q -w net.ipv4.conf.all.accept_redirects=0")]
    assert any("kernel.kptr_restrict" in r for r in plan.reboot_required)
    # persisted already: nothing left to do but wait (a re-run changes nothing)
    again = engine.evaluate([KRN], facts({kernel.SYSCTL_FILE: plan.files[
        kernel.SYSCTL_FILE].new}, probes=RUNNING, kernel_shared=["x"]), ctx())
    assert again.outcomes[0].status == "deferred"
    assert again.files == {}
    assert not again.commands


def test_net_sysctl_without_an_own_netns_and_site_named_hosts_are_deferred():
    shared_net = engine.evaluate([NET], facts(probes=RUNNING, kernel_shared=["container: lxc"],
                                              own_netns=False), ctx())
    assert shared_net.outcomes[0].status == "deferred"
    assert not shared_net.commands
    site = {"sysctl": {"shared_kernel_hosts": ["lab-*"]}}
    named = engine.evaluate([KRN], facts(probes=RUNNING), ctx("lab-3", site))
    assert named.outcomes[0].status == "deferred"
    assert "site: sysctl.shared_kernel_hosts lab-*" in named.outcomes[0].detail
    other = engine.evaluate([KRN], facts(probes=RUNNING), ctx("prod-1", site))
    assert other.outcomes[0].status == "change"


def test_sysctl_running_right_but_persisted_wrong_is_corrected():
    f = facts({kernel.SYSCTL_FILE: "kernel.kptr_restrict = 0\n"},
              probes={"sysctl:kernel.kptr_restrict": "kernel.kptr_restrict = 2\n"})
    plan = engine.evaluate([KRN], f, ctx())
    assert plan.outcomes[0].status == "change"
    assert plan.files[kernel.SYSCTL_FILE].new == "kernel.kptr_restrict = 2\n"
    assert not plan.commands
    absent = engine.evaluate([rule("TST-012", {"kind": "sysctl", "key": "kernel.nope",
                                               "value": 1})], facts(probes=RUNNING), ctx())
    assert absent.outcomes[0].status == "notapplicable"
    assert not absent.files


def test_sysctl_editor_keeps_other_keys_and_reads_dash_and_slash_forms():
    text = "# c\n-kernel/kptr_restrict = 0\nvm.swappiness = 10\n"
    assert edit.get_sysctl(text, "kernel.kptr_restrict") == "0"
    new = edit.set_sysctl(text, "kernel.kptr_restrict", "1")
    assert new == "# c\nkernel.kptr_restrict = 1\nvm.swappiness = 10\n"


# --- boot arguments and audit rules ---------------------------------------------------------


def test_cmdline_is_deferred_with_the_exact_bootloader_command():
    r = rule("TST-020", {"kind": "cmdline", "absent": ["audit=0"]})
    rhel = engine.evaluate([r], facts(family="rhel", probes={"cmdline": "ro audit=0 quiet"}),
                           ctx())
    assert rhel.outcomes[0].status == "deferred"
    assert "grubby --update-kernel=ALL --remove-args=audit=0" in rhel.outcomes[0].detail
    assert not rhel.commands
    assert not rhel.files
    deb = engine.evaluate([r], facts(probes={"cmdline": "ro audit=0"}), ctx())
    assert "/etc/default/grub && update-grub" in deb.outcomes[0].detail
    iommu = rule("TST-021", {"kind": "cmdline", "any_of": ["intel_iommu=on"]})
    add = engine.evaluate([iommu], facts(family="rhel", probes={"cmdline": "ro"}), ctx())
    assert "--args=intel_iommu=on" in add.outcomes[0].detail


AUD = rule("TST-030", {"kind": "audit_rules", "rules": ["-w /etc/libvirt/ -p wa -k virt",
                                                        "-w /usr/bin/virsh -p x -k virt"]})


def test_audit_rules_deferred_with_the_reason_when_they_cannot_load():
    no_daemon = engine.evaluate([AUD], facts(probes={"auditctl-l": "No rules"}), ctx())
    assert no_daemon.outcomes[0].status == "deferred"
    assert "auditd is not running" in no_daemon.outcomes[0].detail
    assert no_daemon.files[kernel.AUDIT_FILE].new.endswith(
        "-w /etc/libvirt/ -p wa -k virt\n-w /usr/bin/virsh -p x -k virt\n")
    no_kernel = engine.evaluate([AUD], facts(processes={"auditd"}, probes={
        "auditctl-l": "Error sending rule list data request (Operation not permitted)\n"
                      "auditctl: exit 255"}), ctx())
    assert "Operation not permitted" in no_kernel.outcomes[0].detail
    assert not no_kernel.commands


def test_audit_rules_loaded_when_auditd_runs_and_compared_in_any_spelling():
    f = facts({"/etc/audit/rules.d/audit.rules": "-D\n-w /etc/libvirt -p aw -F key=virt\n"},
              processes={"auditd"}, probes={"auditctl-l": "-w /etc/libvirt -p wa -k virt\n"})
    plan = engine.evaluate([AUD], f, ctx())
    assert plan.outcomes[0].status == "change"
    assert plan.files[kernel.AUDIT_FILE].new.count("\n-w ") == 1  # only virsh was missing
    assert plan.commands[0][1].startswith("if command -v augenrules")
    loaded = facts({kernel.AUDIT_FILE: plan.files[kernel.AUDIT_FILE].new,
                    "/etc/audit/rules.d/audit.rules": "-w /etc/libvirt -p aw -F key=virt\n"},
                   processes={"auditd"}, probes={"auditctl-l": "-w /etc/libvirt -p wa -k virt\n"
                                                               "-w /usr/bin/virsh -p x -k virt\n"})
    again = engine.evaluate([AUD], loaded, ctx())
    assert again.outcomes[0].status == "compliant"
    assert not again.files
    assert not again.commands


# --- the gather and apply scripts -----------------------------------------------------------


def test_gather_reads_kernel_ownership():
    spec = gather.GatherSpec()
    assert "### kernel" in gather.script(spec)
    out = ("### kernel\npidns: no kthreadd as PID 2 (not the initial PID namespace)\n"
           "netns: own\n### end\n")
    f = gather.parse(out, "h")
    assert f.kernel_shared == ["pidns: no kthreadd as PID 2 (not the initial PID namespace)"]
    assert f.own_netns
    bare = gather.parse("### kernel\n### end\n", "h")
    assert bare.kernel_shared == []
    assert not bare.own_netns
    # a VM built from a container image (issue 23): /.dockerenv, yet the initial PID and
    # user namespaces: it owns its kernel; the marker is kept for the report only
    vm = gather.parse("### kernel\nmarker: container docker\nmarker: /.dockerenv\n### end\n",
                      "h")
    assert vm.kernel_shared == []
    assert vm.kernel_markers == ["container docker", "/.dockerenv"]


def test_guarded_script_validates_before_reload_and_restores_when_rejected():
    new = FileChange(sshd.DROPIN, None, "X11Forwarding no\n", "644")
    old = FileChange(sshd.MAIN, "a\n", "b\n", "644")
    text = apply.guarded_script([new, old], "S")
    assert text.index("sshd -t") < text.index("kill -HUP")
    restore = text[text.index("if ! out=$(sshd -t"):text.index("### done validate")]
    assert f"rm -f {sshd.DROPIN}" in restore  # a new file goes, an old one comes back
    assert f"/var/backups/metalctl{sshd.MAIN}.S" in restore
    assert apply.rejected("### step validate sshd\n### sshd-rejected\n"
                          "### sshd-says /etc/ssh/sshd_config.d/50-metalctl.conf line 3: Bad "
                          "SSH2 cipher spec 'x'.\n### end\n") == (
        "/etc/ssh/sshd_config.d/50-metalctl.conf line 3: Bad SSH2 cipher spec 'x'.")
    assert apply.rejected("### done validate sshd\n### end\n") is None
    plan = engine.RulePlan(host="h", files={sshd.DROPIN: new, "/etc/x": FileChange(
        "/etc/x", None, "x\n", "644")})
    main = apply.script(plan, "sysv", skip={sshd.DROPIN})
    assert "/etc/x" in main
    assert sshd.DROPIN not in main


def test_a_sysctl_this_host_cannot_write_is_deferred_not_failed():
    """systemd-nspawn mounts /proc/sys read-only: sysctl -w would fail the whole apply."""
    probes = {"sysctl:net.ipv4.conf.all.accept_redirects":
              "net.ipv4.conf.all.accept_redirects = 1\nread-only"}
    plan = engine.evaluate([NET], facts(probes=probes, kernel_shared=["container: nspawn"],
                                        own_netns=True), ctx())
    assert plan.outcomes[0].status == "deferred"
    assert "read-only" in plan.outcomes[0].detail
    assert not plan.commands
    assert "net.ipv4.conf.all.accept_redirects = 0" in plan.files[kernel.SYSCTL_FILE].new
    spec = engine.gather_spec([NET])
    assert "[ -w /proc/sys/net/ipv4/conf/all/accept_redirects ]" in \
        spec.probes["sysctl:net.ipv4.conf.all.accept_redirects"]


SVC = rule("TST-040", {"kind": "service", "name": "libvirtd"})


def _units(**states: str) -> dict[str, str]:
    text = "\n\n".join(f"Id={u}\nActiveState={st}\nSubState=x\nMainPID=0"
                         for u, st in states.items())
    return {"service:libvirtd": text}


def test_an_idle_socket_activated_daemon_is_running_and_a_stopped_one_is_restarted():
    assert "service:libvirtd" in engine.gather_spec([SVC]).probes
    idle = engine.evaluate([SVC], facts(init="systemd", probes=_units(
        **{"libvirtd.service": "inactive", "libvirtd.socket": "active"})), ctx())
    assert idle.outcomes[0].status == "compliant"
    assert not idle.handlers
    assert "socket-activated" in idle.outcomes[0].actual
    # an enabled socket that does not listen, or none: the daemon is not reachable; any
    # process named libvirtd (a private or session daemon) is not the host's service
    for f in (facts(init="sysv", processes={"libvirtd"}, probes={}),
              facts(init="systemd", processes={"libvirtd"}, probes=_units(
                  **{"libvirtd.service": "inactive", "libvirtd.socket": "inactive"}))):
        stopped = engine.evaluate([SVC], f, ctx())
        assert stopped.outcomes[0].status == "change"
        assert "not as the host's service" in stopped.outcomes[0].actual
        assert stopped.handlers == ["libvirtd"]
    running = engine.evaluate([SVC], facts(probes={
        "service:libvirtd": "pidfile=/run/libvirtd.pid pid=9 comm=libvirtd"}), ctx())
    assert running.outcomes[0].status == "compliant"
    # a stale pid file whose pid is now another program
    stale = engine.evaluate([SVC], facts(probes={
        "service:libvirtd": "pidfile=/run/libvirtd.pid pid=9 comm=bash"}), ctx())
    assert stale.outcomes[0].status == "change"


def test_harden_without_the_site_pki_is_refused_before_any_host_is_touched(tmp_path):
    """The TLS rules turn listen_tls on; without certificates libvirtd would not start
    again (seen on an installed lab machine), so nothing is done at all."""
    from metalctl.errors import InputError
    from metalctl.harden import HardenOptions, harden
    from metalctl.hosts import HostSpec
    from metalctl.pki import SitePKI
    from metalctl.rules import catalogue

    # 192.0.2.1 (TEST-NET-1) is never connected to: the refusal comes first
    host = HostSpec("c1", "root@192.0.2.1", "192.0.2.1")
    for pki in (None, SitePKI(tmp_path / "no-ca")):
        with pytest.raises(InputError, match="metalctl pki init"):
            harden([host], catalogue.load(), HardenOptions(pki=pki))
