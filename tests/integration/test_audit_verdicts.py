"""Issue 23 on a real host: an SSH test host whose state the test sets wrong in each way
the five false passes missed, audited over SSH; every verdict must be the true one.

The host (a namespace of recipe A, metalctl_lab.hosts) runs this machine's kernel, built
without AppArmor; the test makes libvirtd.conf world-readable, enables umac-64 in sshd,
declares apt sources in deb822 (one undeclared mirror), stores a package list
lz4-compressed with a pending security update of an installed package, and runs a
process named libvirtd that is not the host's libvirt service."""

from __future__ import annotations

import base64
import shutil
import subprocess

import pytest

from metalctl import hosts
from metalctl.audit import run as audit
from metalctl.audit.model import FAIL
from metalctl.rules import catalogue
from metalctl_lab.hosts import HostLab

from .sshhosts import changed_sums as sums
from .sshhosts import running

RULES = [r for r in catalogue.load() if "bmc" not in r.platforms]
SITE = """
repositories:
  apt:
    - {uri: "http://deb.example/debian-security", signed_by: /usr/share/keyrings/site.gpg}
"""
RELEASE = ("Origin: Debian\nLabel: Debian-Security\nSuite: stable-security\n"
           "Codename: bookworm-security\nDate: Sat, 05 Dec 2026 00:00:00 UTC\n"
           "Architectures: {arch}\nComponents: main\n")
PACKAGES = ("Package: bash\nVersion: 99.0\nArchitecture: {arch}\nEssential: yes\n"
            "Maintainer: x <x@example>\nFilename: pool/b/bash_99.0_{arch}.deb\nSize: 100\n"
            "Description: a pending security update\n\n")
LISTS = "/var/lib/apt/lists/deb.example_debian-security_dists_bookworm-security"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from running(tmp_path_factory, "verdict-hosts", 202, (1,))


def run(lab: HostLab, script: str) -> str:
    out = lab.exec(1, script)
    assert out.returncode == 0, out.stderr
    return out.stdout


def set_wrong(lab: HostLab) -> None:
    arch = run(lab, "dpkg --print-architecture").strip()
    packages = subprocess.run(["lz4", "-q"], input=PACKAGES.format(arch=arch).encode(),
                              capture_output=True, check=True).stdout
    run(lab, f"""set -e
chmod 0644 /etc/libvirt/libvirtd.conf
mkdir -p /etc/ssh/sshd_config.d
printf 'MACs umac-64@openssh.com,hmac-sha2-256\\n' > /etc/ssh/sshd_config.d/00-weak.conf
grep -q '^Include /etc/ssh/sshd_config.d/\\*.conf' /etc/ssh/sshd_config || \\
  sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
rm -f /etc/apt/sources.list /etc/apt/sources.list.d/*.list
cat > /etc/apt/sources.list.d/debian.sources <<'EOF'
Types: deb
URIs: http://mirror.elsewhere.example/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.example/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/site.gpg
EOF
rm -f /var/lib/apt/lists/*_Packages* /var/lib/apt/lists/*Release
printf '{RELEASE.format(arch=arch)}' > {LISTS}_InRelease
echo {base64.b64encode(packages).decode()} | base64 -d > {LISTS}_main_binary-{arch}_Packages.lz4
mkdir -p /tmp/private && cp /bin/sleep /tmp/private/libvirtd
rm -f /run/libvirtd.pid
setsid /tmp/private/libvirtd 600 >/dev/null 2>&1 < /dev/null &
""")


@pytest.mark.skipif(shutil.which("lz4") is None, reason="no lz4 to write the package list")
def test_the_five_false_passes_fail_and_pkg007_counts_the_pending_update(lab, tmp_path):
    set_wrong(lab)
    site_file = tmp_path / "site.yaml"
    site_file.write_text(SITE)
    spec = hosts.HostSpec(name="h1", ssh=f"root@{lab.address(1)}",
                          mgmt_address=lab.address(1))
    opts = audit.AuditOptions(site=hosts.load_site(site_file), key_file=lab.client_key,
                              known_hosts=lab.known_hosts)
    before = sums(lab, 1)
    report = audit.audit([spec], RULES, opts)
    assert sums(lab, 1) == before, "the audit changed the host"
    r = {x.rule: x for x in report.results()}
    # a kernel without AppArmor (this machine's own), libvirt's profile file or not
    assert r["APP-001"].status == FAIL, r["APP-001"]
    assert "reboot alone does not help" in r["SEL-006"].remediation
    assert r["SSH-008"].status == FAIL
    assert "umac-64@openssh.com" in r["SSH-008"].evidence.actual
    assert r["APT-001"].status == FAIL
    assert "mirror.elsewhere.example" in r["APT-001"].evidence.actual
    assert r["FIL-002"].status == FAIL
    assert "/etc/libvirt/libvirtd.conf 644" in r["FIL-002"].evidence.actual
    assert r["LVT-030"].status == FAIL
    assert "not as the host's service" in r["LVT-030"].evidence.actual
    assert r["PKG-007"].status == FAIL, r["PKG-007"].evidence
    assert "apt: 1 pending" in r["PKG-007"].evidence.detail
    # the namespace shares this machine's kernel: the fix is on the kernel's owner, and
    # nothing claims a value was persisted that the host's file does not carry
    shared = [x for x in r.values() if x.status == FAIL and x.evidence.source == "sysctl -a"
              and "kernel-global" in (x.evidence.detail or "")]
    for x in shared:
        assert "machine that owns this kernel" in x.remediation, x
        assert "reboot" not in x.remediation.replace("rebooting this host does not", ""), x
    for x in r.values():
        if x.status == FAIL and x.evidence.source == "sysctl -a":
            assert "not persisted" in x.evidence.detail, x  # nothing claims it was
