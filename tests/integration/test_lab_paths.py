"""The lab's Ironic, Nova and Placement configurations against the peers' own option
lists: every option whose default is a path outside the peer's own package (Ironic's
``/httpboot``, ``/tftpboot``, ``/var/lib/ironic/...``, ``/etc/ironic/...``; oslo.policy's
``policy.yaml``, searched in ``/etc/<project>``) is set in the file the lab writes, to a
path inside the lab's folder. ``tests/unit/test_lab_paths.py`` checks every path the
files do name; this one finds the options they forgot (issue 18: Ironic's ``ipxe`` boot
interface would not load without ``/httpboot``).

Nothing is started: the peers' venvs only list their options (about 3 s each).
"""

from __future__ import annotations

import configparser
import json
import subprocess
from pathlib import Path

import pytest

from metalctl_lab import glance, ironic_conf, nova, nova_venv, peers, prov_ironic

pytestmark = pytest.mark.venvs

LIST_OPTS = """
import json, sys
from importlib.metadata import entry_points
from oslo_config import generator
wanted = sys.argv[1].split(",")
names = sorted({ep.name for ep in entry_points(group="oslo.config.opts")
                if any(ep.name == w or ep.name.startswith(w + ".") for w in wanted)})
out = set()
for _, groups in generator._list_opts(names):
    for group, opts in groups:
        for opt in opts:
            for v in opt.default if isinstance(opt.default, list) else [opt.default]:
                if isinstance(v, str):
                    out.add((getattr(group, "name", group) or "DEFAULT", opt.dest, v))
print(json.dumps(sorted(out)))
"""

#: options searched as relative names in /etc/<project> and /etc (oslo.policy)
SEARCHED = {("oslo_policy", "policy_file"), ("oslo_policy", "policy_dirs")}
#: where a default path is the program's own or the system's read-only data
READ_ONLY_ROOTS = ("/usr/", "/dev/", "/proc/", "/sys/")
#: options the lab's services never read, with why (a site running them sets them)
NOT_READ = {
    ("DEFAULT", "config_file"): "the lab names its config files on the command line",
    ("DEFAULT", "config_dir"): "the lab names its config files on the command line",
    ("oslo_middleware", "http_basic_auth_user_file"): "http_basic auth is not enabled",
    # Nova: options of drivers the lab does not use, or of nova-compute (compute_site)
    ("vmware", "serial_log_dir"): "VMware driver",
    ("libvirt", "vzstorage_log_path"): "Virtuozzo storage volumes",
    ("DEFAULT", "rootwrap_config"): "nova-compute only: set by compute_site",
    ("compute", "provider_config_location"): "nova-compute only: set by compute_site",
}


def global_path_options(python: Path, namespaces: str) -> set[tuple[str, str]]:
    proc = subprocess.run([str(python), "-c", LIST_OPTS, namespaces], capture_output=True,
                          text=True, check=True, timeout=120)
    found = set()
    own = str(python.parent.parent) + "/"  # the venv: the peer's own package data
    for group, name, default in json.loads(proc.stdout):
        if (group, name) in SEARCHED or (default.startswith("/")
                                         and not default.startswith((*READ_ONLY_ROOTS, own))):
            found.add((group, name))
    return found - set(NOT_READ)


def assert_set_inside(conf_text: str, options: set[tuple[str, str]], lab: Path) -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(conf_text)
    missing, outside = [], []
    for group, name in sorted(options):
        section = parser.defaults() if group == "DEFAULT" else (
            parser[group] if parser.has_section(group) else {})
        value = section.get(name)
        if value is None:
            missing.append(f"[{group}] {name}")
        elif not all(Path(v.strip()).is_relative_to(lab) for v in value.split(",")):
            outside.append(f"[{group}] {name} = {value}")
    assert not missing, f"path options the lab does not set: {missing}"
    assert not outside, f"path options set outside the lab folder: {outside}"


@pytest.mark.parametrize("provnet", [False, True], ids=["loopback", "provisioning-net"])
def test_ironic_sets_every_path_option_inside_the_lab(tmp_path: Path, provnet: bool) -> None:
    options = global_path_options(peers.peer_bin("python"), "ironic,oslo,keystonemiddleware")
    assert ("deploy", "http_root") in options
    assert ("pxe", "tftp_root") in options
    anaconda = prov_ironic.anaconda("10.203.0.1", tmp_path, 6385) if provnet else None
    text = ironic_conf.write(tmp_path, "127.20.4.1", 6385, None, anaconda).read_text()
    assert_set_inside(text, options, tmp_path)


def test_nova_and_placement_set_every_path_option_inside_the_lab(tmp_path: Path) -> None:
    python = nova_venv.nova_bin("python")
    lab = nova.NovaLab(str(tmp_path), "127.21.0.1", rabbit_password="x")
    controller = global_path_options(python, "nova.conf,oslo")
    assert ("oslo_policy", "policy_file") in controller
    assert_set_inside(nova._controller_conf(lab), controller, tmp_path)
    assert_set_inside(nova.placement_conf(lab), global_path_options(python, "placement,oslo"),
                      tmp_path)
    # what NOT_READ leaves to the computes is set for them
    options = nova.compute_site(lab, "c1", "qemu:///system")["options"]
    assert Path(options["DEFAULT"]["rootwrap_config"]).is_relative_to(tmp_path)
    assert Path(options["compute"]["provider_config_location"]).is_relative_to(tmp_path)


def test_glance_sets_every_path_option_inside_the_lab(tmp_path: Path) -> None:
    options = global_path_options(nova_venv.glance_bin("python"), "glance.api,glance.store,oslo")
    assert ("glance_store", "filesystem_store_datadir") in options  # /var/lib/glance/images
    options.discard(("glance_store", "vmware_store_image_dir"))  # the VMware store: unused
    text = glance.glance_conf(tmp_path, "127.21.0.5")
    assert_set_inside(text, options, tmp_path)
    # a URL default the path search cannot see: file:///tmp/staging/
    assert f"node_staging_uri = file://{tmp_path}/" in text
