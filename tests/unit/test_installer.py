"""The stand-in installer's own logic: module dependencies, shared libraries, and its
kickstart parser (the busybox sh one the installer runs) over the repository's templates
and over what it must refuse."""

import shutil
import struct
import tempfile
from pathlib import Path

import pytest

from metalctl.credentials import Secret
from metalctl.errors import InputError
from metalctl.provision import kickstart as ks
from metalctl_lab import installer

pytestmark = pytest.mark.skipif(not shutil.which("busybox"),
                                reason="busybox missing: run scripts/setup.sh")

HASH = "$6$rounds=5000$saltsalt$" + "A" * 86
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0oVlJ9v0vH3xYf0m3XU8y3m2y7wq3n0P3a0bq9w1Z op@x"
BASE = f"""liveimg --url http://10.0.0.1/img.tar.gz
zerombr
clearpart --all --initlabel
part / --fstype=ext4 --size=2048 --grow
rootpw --iscrypted {HASH}
sshkey --username=root "{KEY}"
reboot
"""


def _ko(depends: str) -> bytes:
    return b"\x7fELF" + struct.pack("<I", 0) + b"\0license=GPL\0depends=" + \
        depends.encode() + b"\0name=x\0"


def test_module_depends_reads_the_modinfo_field():
    assert installer.module_depends(_ko("virtio,virtio_ring")) == ["virtio", "virtio_ring"]
    assert installer.module_depends(_ko("")) == []


def test_module_order_puts_dependencies_first_and_skips_built_ins():
    with tempfile.TemporaryDirectory() as tmp:
        mods = {}
        for name, deps in {"virtio_net": "net_failover,virtio", "net_failover": "failover",
                           "failover": "", "virtio": "", "virtio_blk": "virtio"}.items():
            p = Path(tmp) / f"{name}.ko"
            p.write_bytes(_ko(deps))
            mods[name] = p
        order = installer.module_order(("virtio_net", "virtio_blk", "ext4"), mods)
    assert order == ["failover", "net_failover", "virtio", "virtio_net", "virtio_blk"]


def test_shared_libraries_include_the_loader():
    libs = installer.shared_libraries("/usr/bin/curl")
    assert any("libcurl" in p for p in libs)
    assert any("ld-linux" in p for p in libs)


def test_a_minimal_kickstart_parses_with_the_hash_intact():
    plan = installer.check_kickstart(BASE)
    assert plan["liveimg"] == "http://10.0.0.1/img.tar.gz"  # `--url value` (Ironic's form)
    assert plan["finish"] == "reboot"
    assert plan["part"] == "/|ext4|2048|1||"
    assert plan["rootpw_crypted"] == "yes"
    assert plan["sshkeys"] == "1"


@pytest.mark.parametrize("template", ["rhel9-kvm", "rhel8-kvm", "ironic-rhel9-kvm"])
def test_every_shipped_template_is_accepted(template):
    site = ks.load_site({"kickstart": {
        "install": {"liveimg": "http://10.0.0.1/img.tar.gz"},
        "root_password": {"env": "PW"}, "ssh_keys": [{"user": "root", "key": KEY},
                                                     {"user": "ops", "key": KEY}],
        "nameservers": ["10.0.0.1"], "kernel_args": ["console=ttyS0"]}},
        label="site", environ={"PW": "Clear-Passw0rd-x"})
    plan = {"profile": "p", "plan": {"kernel_args": ["intel_iommu=on", "hugepages=4"],
                                     "tuned": {"profile": None}}}
    node = ks.KickstartNode("n1", "52:54:00:aa:bb:01", address="10.0.0.21/24",
                            gateway="10.0.0.1")
    text = ks.render(template, ks.variables_for(plan, site, node, callback=ks.Callback(
        "http://10.0.0.1:8080/callback/n1", Secret("tok_0123456789abcdef")))).text
    if ks.for_ironic(text):
        text = ks.ironic_preview(text, template)
    got = installer.check_kickstart(text, template)
    assert got["append"] == "intel_iommu=on hugepages=4 console=ttyS0"
    assert got["users"].split() == ["ops"]
    assert got["MACAddress"] == "52:54:00:aa:bb:01"
    assert got["Address"] == "10.0.0.21/24"
    assert got["finish"] == "reboot"


@pytest.mark.parametrize(("change", "line", "words"), [
    ("frobnicate --now\n", 8, "unknown command 'frobnicate'"),
    ("url --url=http://mirror/os\n", 8, "installs a liveimg only"),
    ("rootpw Clear-text\n", 8, "clear root password"),
    ("clearpart --none\n", 8, "only clearpart --all"),
    ("part /boot/efi --fstype=efi --size=200\n", 8, "BIOS only"),
    ("network --device=aa:bb:cc:dd:ee:ff --bootproto=static --ip=10.0.0.2\n", 8,
     "static needs --ip and --netmask"),
    ("bootloader --bogus\n", 8, "unknown option --bogus"),
    ('sshkey --username=root "unbalanced\n', 8, "unbalanced quote"),
    ("%include /tmp/part.ks\n", 8, "section %include is not supported"),
])
def test_refused_naming_the_line(change, line, words):
    with pytest.raises(InputError) as err:
        installer.check_kickstart(BASE + change)
    assert err.value.line == line
    assert words in str(err.value)


def test_a_section_without_end_is_refused():
    with pytest.raises(InputError, match="no %end"):
        installer.check_kickstart(BASE + "%post\ntrue\n")


def test_no_install_source_is_refused():
    with pytest.raises(InputError, match="no liveimg"):
        installer.check_kickstart(BASE.replace("liveimg --url http://10.0.0.1/img.tar.gz\n",
                                               ""))
