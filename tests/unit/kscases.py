"""The kickstart tests' shared inputs: a site, a node, a callback, and plans derived from
the recorded facts through a real store. A helper module: test modules import from here,
never from each other."""

import warnings
from pathlib import Path

from pykickstart.parser import KickstartParser
from pykickstart.version import makeVersion

from metalctl.credentials import Secret
from metalctl.profile import stage
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.provision import kickstart as ks
from metalctl.store import Store

REPO = Path(__file__).resolve().parents[2]
FACTS = REPO / "tests" / "samples" / "facts"
PEERS_PYTHON = Path.home() / ".cache" / "metalctl" / "peers" / "bin" / "python"

CLEAR = "Clear-Root-Passw0rd"
TOKEN = "tok_Zq8vL2mN4pR6sT0uW3yA5cE7gI9kM1oQ"
KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHq0oVlJ9v0vH3xYf0m3XU8y3m2y7wq3n0P3a0bq9w1Z "
       "operator@example")
SITE = {
    "repositories": {"dnf": [
        {"id": "baseos", "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9"},
        {"id": "appstream", "gpgkey": "file:///etc/pki/rpm-gpg/RPM-GPG-KEY-Rocky-9"}]},
    "kickstart": {
        "install": {"liveimg": "http://10.0.0.1/images/rocky9.tar.gz"},
        "repositories": {
            "baseos": {"baseurl": "https://mirror.example.net/rocky/9/BaseOS/x86_64/os/"},
            "appstream": {"mirrorlist": "https://mirrors.example.net/list?repo=AppStream-9"}},
        "root_password": {"env": "KS_TEST_ROOTPW"},
        "ssh_keys": [{"user": "root", "key": KEY}, {"user": "ops", "key": KEY}],
        "ntp_servers": ["ntp.example.net"],
        "nameservers": ["10.0.0.1"],
        "domain": "lab.example.net",
        "kernel_args": ["console=ttyS0,115200n8"],
    },
}
KS_SITE = ks.load_site(SITE, label="site.yaml", environ={"KS_TEST_ROOTPW": CLEAR})
NODE = ks.KickstartNode("r750-01", "52-54-00-AA-BB-01", address="10.0.0.21/24",
                        gateway="10.0.0.1")
CALLBACK = ks.Callback("http://10.0.0.1:8080/callback/r750-01", Secret(TOKEN))


def stored_plan(tmp: Path, facts: str, profile: str) -> dict:
    """Derive through the profile stage into a real store and read it back."""
    topo = inband.parse((FACTS / facts).read_text())
    with Store(tmp / "store.db") as store:
        stage.plan(store, stage.NodeRef(label="r750-01", key="node-1"),
                   ProfileLibrary().load(profile), topo)
        return store.get_data("node-1", "plan")


def parse_kickstart(text: str, version: str = "RHEL9"):
    parser = KickstartParser(makeVersion(version))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parser.readKickstartFromString(text)
    return parser.handler
