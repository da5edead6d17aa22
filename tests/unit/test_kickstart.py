"""Kickstarts from real derived plans: rendered, validated by pykickstart per target OS,
the plan's kernel arguments on --append, secrets masked, every bad input refused."""

import re
import subprocess

import pytest
import yaml
from kscases import (
    CALLBACK,
    CLEAR,
    KEY,
    KS_SITE,
    NODE,
    PEERS_PYTHON,
    REPO,
    SITE,
    TOKEN,
    parse_kickstart,
    stored_plan,
)

from metalctl.credentials import Secret
from metalctl.data import data_dir
from metalctl.data.merge import deep_merge
from metalctl.errors import InputError
from metalctl.provision import kickstart as ks
from metalctl.provision import shacrypt

PAIRS = [("rhel9-kvm", "RHEL9"), ("rhel9-kvm", "RHEL10"), ("rhel9-kvm", "Rocky 9.4"),
         ("rhel9-kvm", "AlmaLinux 9"), ("rhel9-kvm", "Fedora 40"), ("rhel9-kvm", "F46"),
         ("rhel8-kvm", "RHEL8"), ("rhel8-kvm", "Rocky 8"),
         ("ironic-rhel9-kvm", "RHEL9"), ("ironic-rhel9-kvm", "Alma 10")]


@pytest.fixture(scope="module")
def sriov_row(tmp_path_factory):
    """Two NUMA nodes: IOMMU and per-node hugepages, tuned cpu-partitioning."""
    return stored_plan(tmp_path_factory.mktemp("store"), "r750-2s-48c-512g.txt", "nfv-sriov")


@pytest.fixture(scope="module")
def hpc_row(tmp_path_factory):
    """Kernel isolation: isolcpus, nohz_full, rcu_nocbs, nosmt, low-latency arguments."""
    return stored_plan(tmp_path_factory.mktemp("store"), "edge-1s-12c-64g.txt", "hpc")


def _vars(row_, **over):
    return {**ks.variables_for(row_, KS_SITE, NODE, callback=CALLBACK), **over}


def test_shipped_templates():
    assert ks.list_templates() == ["ironic-rhel9-kvm", "rhel8-kvm", "rhel9-kvm"]


@pytest.mark.parametrize(("template", "os_name"), PAIRS)
def test_every_template_renders_and_validates_for_its_os(sriov_row, template, os_name):
    _check_template(sriov_row, template, os_name)


@pytest.mark.parametrize(("template", "os_name"), [("rhel9-kvm", "RHEL9"),
                                                   ("rhel8-kvm", "RHEL8")])
def test_kernel_isolation_plan(hpc_row, template, os_name):
    assert "nohz_full=1-11" in hpc_row["plan"]["kernel_args"]
    _check_template(hpc_row, template, os_name)


def _check_template(row, template, os_name):
    rendered = ks.render(template, _vars(row))
    args = row["plan"]["kernel_args"]
    warns = ks.validate(rendered.text, os_name, f"{template} for node r750-01",
                        kernel_args=args)
    assert all(isinstance(w, str) for w in warns)
    text = ks.ironic_preview(rendered.text, "t") if ks.for_ironic(rendered.text) \
        else rendered.text
    handler = parse_kickstart(text, ks.target_os(os_name).version)
    # the plan's arguments, in order, then the site's
    assert handler.bootloader.appendLine.split() == [*args, "console=ttyS0,115200n8"]
    assert handler.rootpw.isCrypted
    assert handler.rootpw.password == KS_SITE.rootpw.reveal()
    assert {(k.username, k.key) for k in handler.sshkey.sshUserList} == \
        {("root", KEY), ("ops", KEY)}
    net = handler.network.network[0]
    assert (net.device, net.bootProto, net.ip, net.netmask, net.gateway, net.hostname) == \
        ("52:54:00:aa:bb:01", "static", "10.0.0.21", "255.255.255.0", "10.0.0.1",
         "r750-01.lab.example.net")
    scripts = handler.scripts
    assert any(f"isolated_cores={row['plan']['tuned']['variables']['isolated_cores']}" in
               s.script for s in scripts)
    assert any("[baseos]" in s.script and "repo_gpgcheck=1" in s.script and
               "mirrorlist=https://mirrors.example.net/list?repo=AppStream-9" in s.script
               for s in scripts)
    hostkeys = next(s for s in scripts if "stage=hostkeys" in s.script)
    assert not hostkeys.inChroot
    assert hostkeys.errorOnFail
    assert any(s.type == 4 and "stage=error" in s.script for s in scripts)  # %onerror
    last = scripts[-1]
    # the end callback is the last thing the installer does (Ironic reboots on its own)
    assert "stage=end" in last.script
    assert last.errorOnFail
    if template.startswith("ironic"):
        assert '"agent_status": "end"' in last.script
        assert '"agent_status": "start"' in scripts[0].script


def test_rhel8_has_no_timesource_so_the_rhel9_template_is_refused_naming_the_line(sriov_row):
    rendered = ks.render("rhel9-kvm", _vars(sriov_row))
    line = rendered.text.splitlines().index("timesource --ntp-server=ntp.example.net") + 1
    with pytest.raises(InputError) as err:
        ks.render_checked("rhel9-kvm", _vars(sriov_row), "RHEL8")
    assert err.value.line == line
    assert str(err.value).startswith(f"rhel9-kvm for node r750-01:{line}: timesource")
    assert "Unknown command" in str(err.value)


@pytest.mark.parametrize("bad", ["bogus --now", "network --device=eth0 --bootprotocol=dhcp",
                                 "autopart --type=zfs"])
def test_an_invalid_command_or_option_is_refused_naming_its_line(sriov_row, bad):
    lines = ks.render("rhel9-kvm", _vars(sriov_row)).text.splitlines()
    lines.insert(6, bad)
    with pytest.raises(InputError) as err:
        ks.validate("\n".join(lines) + "\n", "RHEL9", "rhel9-kvm for node r750-01")
    assert err.value.line == 7
    assert err.value.path == "rhel9-kvm for node r750-01"


def test_a_shell_syntax_error_in_post_is_refused_before_any_install(sriov_row):
    text = ks.render("rhel9-kvm", _vars(sriov_row)).text
    text = text.replace("ssh-keygen -A\n", "ssh-keygen -A\nif then fi\n")
    line = text.splitlines().index("if then fi") + 1
    with pytest.raises(InputError) as err:
        ks.validate(text, "RHEL9", "rhel9-kvm for node r750-01")
    assert err.value.field == "%post section"
    assert err.value.line == line


def test_include_is_refused(sriov_row):
    text = ks.render("rhel9-kvm", _vars(sriov_row)).text + "%include http://x/y.ks\n"
    with pytest.raises(InputError, match="%include"):
        ks.validate(text, "RHEL9", "t")


def test_a_clear_root_password_is_refused_without_echoing_it(sriov_row):
    text = re.sub(r"^rootpw .*$", "rootpw --plaintext hunter2-clear", ks.render(
        "rhel9-kvm", _vars(sriov_row)).text, flags=re.M)
    with pytest.raises(InputError) as err:
        ks.validate(text, "RHEL9", "t")
    assert "clear root password" in str(err.value)
    assert "hunter2" not in str(err.value)


def test_a_missing_variable_is_an_input_error_naming_template_and_variable(sriov_row):
    variables = _vars(sriov_row)
    del variables["timezone"]
    with pytest.raises(InputError) as err:
        ks.render("rhel9-kvm", variables)
    assert err.value.path == "_kvm-host.ks.j2"
    assert err.value.field == "variable timezone"
    assert "missing for node r750-01" in str(err.value)


def test_an_unknown_variable_is_an_input_error(sriov_row):
    with pytest.raises(InputError, match="variable timezon: unknown"):
        ks.render("rhel9-kvm", _vars(sriov_row, timezon="UTC"))


def test_own_templates_undocumented_names_missing_attributes_and_none(sriov_row, tmp_path):
    (tmp_path / "a.ks.j2").write_text("text\n{{ site_password }}\n")
    (tmp_path / "b.ks.j2").write_text("text\nlang {{ lang }}\nmtu {{ network.mtu }}\n")
    (tmp_path / "c.ks.j2").write_text("text\n\nip {{ network.gateway }}\n")
    variables = _vars(sriov_row)
    with pytest.raises(InputError, match="a.ks.j2: variable site_password: unknown"):
        ks.render("a", variables, template_dirs=[tmp_path])
    with pytest.raises(InputError) as err:
        ks.render("b", variables, template_dirs=[tmp_path])
    assert err.value.line == 3
    assert "mtu" in str(err.value)
    dhcp = ks.variables_for(sriov_row, KS_SITE, ks.KickstartNode("n2", "52:54:00:00:00:02"),
                            callback=CALLBACK)
    assert dhcp["network"]["bootproto"] == "dhcp"
    with pytest.raises(InputError) as err:
        ks.render("c", dhcp, template_dirs=[tmp_path])
    assert err.value.line == 3
    assert "None" in str(err.value)
    (tmp_path / "d.ks.j2").write_text("text\n{% if lang %}\nlang {{ lang }}\n")
    with pytest.raises(InputError) as err:
        ks.render("d", variables, template_dirs=[tmp_path])
    assert err.value.field == "(syntax)"
    (tmp_path / "e.ks.j2").write_text("{% include lang ~ '.ks.j2' %}\n")
    with pytest.raises(InputError, match="computed template name"):
        ks.render("e", variables, template_dirs=[tmp_path])


def test_unknown_template_and_partials_are_refused(sriov_row):
    with pytest.raises(InputError, match="rhel9-kvm"):  # the list of templates is given
        ks.render("rhel7-kvm", _vars(sriov_row))
    with pytest.raises(InputError, match="partials"):
        ks.render("_kvm-host", _vars(sriov_row))


def test_secrets_only_in_the_text_never_in_the_masked_view_or_repr(sriov_row):
    rendered = ks.render("rhel9-kvm", _vars(sriov_row))
    crypted = KS_SITE.rootpw.reveal()
    assert crypted.startswith("$6$rounds=")
    assert crypted in rendered.text
    assert TOKEN in rendered.text
    assert CLEAR not in rendered.text
    masked = rendered.masked()
    for secret in (TOKEN, crypted, CLEAR, crypted.split("$")[-1]):
        assert secret not in masked
        assert secret not in repr(rendered)
    assert "rootpw --iscrypted ***" in masked
    assert "Bearer ***" in masked
    # the masked view is the kickstart otherwise unchanged
    assert len(masked.splitlines()) == len(rendered.text.splitlines())


def test_the_plan_is_read_from_the_store_row_or_the_plan_itself(sriov_row):
    from_row = ks.variables_for(sriov_row, KS_SITE, NODE, callback=CALLBACK)
    from_plan = ks.variables_for(sriov_row["plan"], KS_SITE, NODE, callback=CALLBACK)
    assert from_row["kernel_args"] == from_plan["kernel_args"] == \
        sriov_row["plan"]["kernel_args"]
    assert from_row["profile"] == "nfv-sriov"
    assert from_row["tuned"]["variables"] == {"isolated_cores": "3-47,51-95"}
    with pytest.raises(InputError, match="not a profile plan"):
        ks.variables_for({"profile": "x"}, KS_SITE, NODE, callback=CALLBACK)


@pytest.mark.parametrize("bad", ["isolcpus=1-3;reboot", "nohz_full=$(id)", "quiet splash",
                                 'console="ttyS0"', "isolcpus=", "=1", 3])
def test_a_bad_kernel_argument_in_the_plan_is_refused(sriov_row, bad):
    plan = {**sriov_row["plan"], "kernel_args": [*sriov_row["plan"]["kernel_args"], bad]}
    with pytest.raises(InputError, match="plan.kernel_args"):
        ks.variables_for(plan, KS_SITE, NODE, callback=CALLBACK)


def test_append_checks():
    plan = ["intel_iommu=on", "iommu=pt", "hugepages=0:4,1:4"]
    assert ks.check_append("intel_iommu=on iommu=pt hugepages=0:4,1:4 quiet", plan, "t") == []
    with pytest.raises(InputError, match="missing: hugepages=0:4,1:4"):
        ks.check_append("intel_iommu=on iommu=pt", plan, "t")
    with pytest.raises(InputError, match="iommu given twice with different values"):
        ks.check_append("intel_iommu=on iommu=pt iommu=off hugepages=0:4,1:4", plan, "t")
    assert ks.check_append("iommu=pt iommu=pt", None, "t") == \
        ["bootloader --append: iommu=pt given twice"]
    # repeatable keys, and hugepages counts per hugepagesz
    assert ks.check_append("console=tty0 console=ttyS0,115200 hugepagesz=1G hugepages=4 "
                           "hugepagesz=2M hugepages=512", None, "t") == []
    with pytest.raises(InputError, match="hugepages given twice"):
        ks.check_append("hugepagesz=1G hugepages=4 hugepages=8", None, "t")
    for bad in ("a=b|c", "x=`id`", "rd.break>x"):
        with pytest.raises(InputError, match="not a kernel argument"):
            ks.check_append(bad, None, "t")


def test_a_kickstart_without_the_plans_arguments_is_refused(sriov_row):
    text = ks.render("rhel9-kvm", _vars(sriov_row)).text.replace(" hugepages=0:197,1:198", "")
    with pytest.raises(InputError, match="missing: hugepages=0:197,1:198"):
        ks.validate(text, "RHEL9", "t", kernel_args=sriov_row["plan"]["kernel_args"])


def test_site_and_plan_kernel_arguments_may_not_conflict(sriov_row):
    site = _site(kernel_args=["iommu=off"])
    with pytest.raises(InputError, match="iommu given twice"):
        ks.variables_for(sriov_row, site, NODE, callback=CALLBACK)


@pytest.mark.parametrize(("name", "version", "template"), [
    ("RHEL9", "RHEL9", "rhel9-kvm"), ("rhel 8.10", "RHEL8", "rhel8-kvm"),
    ("Rocky 9.4", "RHEL9", "rhel9-kvm"), ("RockyLinux-8", "RHEL8", "rhel8-kvm"),
    ("AlmaLinux 10", "RHEL10", "rhel9-kvm"), ("centos stream 9", "RHEL9", "rhel9-kvm"),
    ("Fedora 40", "F40", "rhel9-kvm"), ("F46", "F46", "rhel9-kvm")])
def test_os_names_map_to_pykickstart_versions(name, version, template):
    target = ks.target_os(name)
    assert (target.version, target.default_template) == (version, template)


@pytest.mark.parametrize("name", ["Debian 12", "RHEL99", "rhel", "Fedora 2"])
def test_unknown_os_is_an_input_error(name):
    with pytest.raises(InputError):
        ks.target_os(name)


HASHED = shacrypt.sha512_crypt(CLEAR, "abcdefgh", 5000)


def _site(**kickstart):
    # a ready hash: these sites need no hashing of their own
    return {**SITE, "kickstart": {**SITE["kickstart"], "root_password": {"hash": HASHED},
                                  **kickstart}}


@pytest.mark.parametrize(("site", "where"), [
    (_site(repositories={"baseos": {"baseurl": "https://m/b"}}), "repositories.appstream"),
    (_site(repositories={**SITE["kickstart"]["repositories"], "epel": {"baseurl": "https://e"}}),
     "repositories.epel"),
    (_site(ssh_keys=[{"user": "root", "key": "ssh-ed25519 AAAA\" ; reboot"}]), "ssh_keys[0]"),
    (_site(root_password={"hash": "$1$md5$weak"}), "root_password.hash"),
    (_site(root_password={"env": "KS_TEST_UNSET_VARIABLE"}), "root_password.env"),
    (_site(install={"liveimg": "http://x/i.tgz", "url": "http://x/tree"}), "install"),
    (_site(timezon="UTC"), "timezon"),
    ({**SITE, "repositories": {"dnf": [{"id": "baseos"}]},
      "kickstart": {**SITE["kickstart"], "repositories": {"baseos": {"baseurl": "https://b"}}}},
     "gpgkey"),
])
def test_the_site_section_is_checked(site, where):
    with pytest.raises(InputError) as err:
        ks.load_site(site, label="site.yaml", environ={"KS_TEST_ROOTPW": "x"})
    assert where in err.value.field
    assert "weak" not in str(err.value)


def test_root_password_as_a_given_secret_or_hash_and_locked(sriov_row):
    assert shacrypt.verify(CLEAR, KS_SITE.rootpw.reveal())
    given = ks.load_site(SITE, root_password=Secret("another"), environ={})
    assert given.rootpw.reveal().startswith("$6$rounds=100000$")
    assert given.rootpw.reveal() != KS_SITE.rootpw.reveal()
    assert ks.load_site(_site()).rootpw.reveal() == HASHED
    locked = ks.load_site(_site(root_password={"lock": True}))
    text = ks.render("rhel9-kvm", ks.variables_for(sriov_row, locked, NODE,
                                                   callback=CALLBACK)).text
    assert "rootpw --lock" in text.splitlines()


def test_sha512_crypt_matches_the_specification_and_openssl():
    # the two vectors of Drepper's specification
    assert shacrypt.sha512_crypt("Hello world!", "saltstring", 5000) == (
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFd"
        "cbYEdFCoEOfaS35inz1")
    assert shacrypt.sha512_crypt("Hello world!", "saltstringsaltstring", 10000) == (
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/Urjm"
        "M0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.")
    for clear in ("a", "x" * 130, "pässwörd"):
        out = subprocess.run(["openssl", "passwd", "-6", "-salt", "Q/.z09", "-stdin"],
                             input=clear + "\n", capture_output=True, text=True, check=True)
        assert shacrypt.sha512_crypt(clear, "Q/.z09", 5000) == out.stdout.strip()
    one, two = (shacrypt.sha512_crypt("pw", rounds=5000) for _ in range(2))
    assert one != two
    assert shacrypt.verify("pw", one)
    assert not shacrypt.verify("pW", one)
    assert shacrypt.is_sha512_crypt(one)
    assert not shacrypt.is_sha512_crypt("$5$a$b")


def test_every_variable_is_documented():
    readme = (REPO / "kickstart" / "README.md").read_text()
    for name, var in ks.VARIABLES.items():
        row = rf"^\| `{name}` \| {re.escape(var.type)} \| {re.escape(var.source)} \|"
        assert re.search(row, readme, re.M), name


def test_ironic_refuses_what_ironic_refuses(sriov_row):
    text = ks.render("ironic-rhel9-kvm", _vars(sriov_row)).text
    assert "{{ ks_options.agent_token }}" in text  # left for Ironic to fill
    with pytest.raises(InputError, match="heartbeat_url"):
        ks.ironic_preview(text.replace("{{ ks_options.heartbeat_url }}", "http://x"), "t")
    with pytest.raises(InputError, match="image_url"):
        ks.ironic_preview(text + "{{ ks_options.image_url }}\n", "t")


@pytest.mark.venvs
@pytest.mark.skipif(not PEERS_PYTHON.exists(), reason="peers venv absent: run scripts/setup.sh")
def test_ironic_itself_accepts_the_ironic_template(sriov_row, tmp_path):
    path = tmp_path / "ks.cfg.template"
    path.write_text(ks.render("ironic-rhel9-kvm", _vars(sriov_row)).text)
    code = ("import sys; from ironic.common import pxe_utils; "
            "out = pxe_utils.validate_kickstart_template(sys.argv[1]); "
            "print(out.count('fake_token'), out.count('fake_heartbeat_url'))")
    proc = subprocess.run([str(PEERS_PYTHON), "-W", "ignore", "-c", code, str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["3", "3"]  # start, error and end heartbeats


def test_a_site_file_through_the_site_loader(sriov_row):
    """The operator's --site file, merged over the shipped site as harden reads it."""
    site = ks.load_site(load_site(), environ={"KS_SAMPLE_ROOT_PASSWORD": CLEAR})
    node = ks.KickstartNode("r750-02", "52:54:00:aa:bb:02", address6="fd00::22/64",
                            gateway6="fd00::1")
    variables = ks.variables_for(sriov_row, site, node, callback=CALLBACK)
    rendered, _ = ks.render_checked("rhel9-kvm", variables, "Rocky 9")
    handler = parse_kickstart(rendered.text)
    assert handler.repo.dataList() == []  # liveimg: no install-time repositories
    assert handler.liveimg.checksum.startswith("9f86d0")
    assert [(p.mountpoint, p.size, p.grow, p.disk) for p in handler.partition.partitions] == \
        [("/boot", 1024, False, "sda"), ("/", 20480, True, "sda")]
    assert handler.clearpart.drives == ["sda"]
    assert handler.ignoredisk.onlyuse == ["sda"]
    assert handler.bootloader.appendLine.split()[-2:] == ["console=tty0",
                                                          "console=ttyS0,115200n8"]
    assert handler.timezone.timezone == "Europe/London"
    assert [t.ntp_server for t in handler.timesource.dataList()] == ["ntp1.example.net",
                                                                      "ntp2.example.net"]
    net = handler.network.network[0]
    assert (net.bootProto, net.ipv6, net.ipv6gateway, net.nameserver) == \
        ("dhcp", "fd00::22/64", "fd00::1", "10.0.0.1,fd00::1")
    assert "metalink=https://mirrors.example.net/metalink?repo=AppStream-9&arch=x86_64" in \
        rendered.text
    # an installation tree instead: install-time repositories and %packages
    tree = ks.load_site(load_site() | {"kickstart": {**load_site()["kickstart"],
                                                    "install": {"url": "http://t/os/"}}},
                        environ={"KS_SAMPLE_ROOT_PASSWORD": CLEAR})
    variables = ks.variables_for(sriov_row, tree, node, callback=CALLBACK)
    handler = parse_kickstart(ks.render_checked("rhel9-kvm", variables, "RHEL9")[0].text)
    assert {(r.name, r.baseurl or None, r.metalink or None)
            for r in handler.repo.dataList()} == {
        ("baseos", "https://mirror.example.net/rocky/9/BaseOS/x86_64/os/", None),
        ("appstream", None, "https://mirrors.example.net/metalink?repo=AppStream-9&arch=x86_64")}
    assert {"openssh-server", "curl", "tuned", "tuned-profiles-cpu-partitioning"} <= \
        set(handler.packages.packageList)


def load_site():
    """tests/samples/kickstart/site.yaml over the shipped hardening/site.yaml, merged as
    metalctl.hosts.load_site merges a --site file."""
    shipped = yaml.safe_load((data_dir("hardening") / "site.yaml").read_text())
    sample = yaml.safe_load((REPO / "tests" / "samples" / "kickstart" / "site.yaml").read_text())
    return deep_merge(shipped, sample)


def _script(text: str, needle: str) -> str:
    return next(s.script for s in parse_kickstart(text).scripts if needle in s.script)


def test_the_installer_scripts_send_host_keys_and_errors_with_the_token(sriov_row, tmp_path):
    """Run the rendered %post --nochroot and %onerror bodies as anaconda would, with
    curl replaced by a recorder (no network): what reaches metalctl, and how."""
    text = ks.render("rhel9-kvm", _vars(sriov_row)).text
    target = tmp_path / "sysimage"
    (target / "etc" / "ssh").mkdir(parents=True)
    (target / "root").mkdir()
    keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEd5 root@r750-01",
            "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= root@r750-01"]
    for kind, key in zip(("ed25519", "ecdsa"), keys, strict=True):
        (target / "etc" / "ssh" / f"ssh_host_{kind}_key.pub").write_text(key + "\n")
    (target / "root" / "metalctl-post.log").write_text("dracut: cannot find module foo\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    # the recorder keeps curl's arguments and the files named by --data-binary @file
    (bin_dir / "curl").write_text(
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> \"$CALLS\"\n"
        "case \"$a\" in *@/*) cat \"${a#*@}\" >> \"$CALLS\";; esac; done\n")
    (bin_dir / "curl").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "ANA_INSTALL_PATH": str(target),
           "CALLS": str(calls), "TMPDIR": str(tmp_path)}
    for needle in ("stage=hostkeys", "stage=error"):
        body = _script(text, needle).replace("/tmp/", f"{tmp_path}/")
        subprocess.run(["bash", "-c", body], env=env, check=True, timeout=30)
    sent = calls.read_text()
    assert f"Authorization: Bearer {TOKEN}" in sent
    assert "http://10.0.0.1:8080/callback/r750-01?stage=hostkeys" in sent
    assert "http://10.0.0.1:8080/callback/r750-01?stage=error" in sent
    for key in keys:
        assert key in sent
    assert "dracut: cannot find module foo" in sent  # the installer's own message
    assert "metalctl: the kickstart install of r750-01 failed" in sent


def test_deprecated_options_are_warnings_not_errors(sriov_row):
    text = ks.render("rhel9-kvm", _vars(sriov_row)).text.replace(
        "skipx\n", "skipx\nlogging --level=debug\n")
    warns = ks.validate(text, "RHEL9", "t", kernel_args=sriov_row["plan"]["kernel_args"])
    assert any("--level" in w and "deprecated" in w for w in warns)
