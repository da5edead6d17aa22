"""Every file the lab's peers read or write is inside the lab's folder.

A new machine has no ``/httpboot``, ``/tftpboot`` or ``/var/lib/ironic``; a machine that
ran something else may have an ``/etc/ironic/policy.yaml`` or a ``/run/dnsmasq.pid``. The
lab must depend on none of them (issue 18: Ironic would not start without ``/httpboot``).
Each configuration the lab writes is rendered here, without starting anything, and every
path in it is checked. ``tests/integration/test_lab_paths.py`` checks the same files
against the peers' own option lists, so an option that is *not* written is caught too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from metalctl.provision import dnsmasq
from metalctl_lab import (
    glance,
    ironic_conf,
    libvirt_lab,
    neutron_standin,
    nova,
    postgres,
    prov_ironic,
)
from metalctl_lab.provnet import ProvNet


def paths_in(text: str) -> list[str]:
    """Absolute paths in a configuration's values: bare ones and sqlite URLs' (other
    URLs name hosts, not files)."""
    text = re.sub(r"#.*", " ", text)  # comments name paths they do not use
    text = re.sub(r"sqlite:///", " ", text)
    text = re.sub(r"\b[a-z][a-z0-9+.-]*://\S*", " ", text)  # http://, rabbit://, qemu:///
    return re.findall(r"(?<![\w./-])/[\w.@+-][\w.@+/-]*", text)


def assert_inside(text: str, lab: Path, what: str) -> None:
    found = paths_in(text)
    outside = [p for p in found if not Path(p).is_relative_to(lab)]
    assert not outside, f"{what} names paths outside the lab folder {lab}: {outside}"


def test_the_path_finder_sees_what_it_must() -> None:
    # the checker itself: a test that cannot fail is no test
    found = paths_in("http_root = /httpboot\nconnection = sqlite:////var/lib/x.db\n"
                     "url = http://10.0.0.1:80/boot.ipxe\n-k /run/pg -c a=b")
    assert found == ["/httpboot", "/var/lib/x.db", "/run/pg"]


@pytest.mark.parametrize("provnet", [False, True], ids=["loopback", "provisioning-net"])
def test_ironic_conf_keeps_every_path_in_the_lab(tmp_path: Path, provnet: bool) -> None:
    anaconda = prov_ironic.anaconda("10.203.0.1", tmp_path, 6385) if provnet else None
    conf = ironic_conf.write(tmp_path, "127.20.4.1", 6385, None, anaconda).read_text()
    assert_inside(conf, tmp_path, "ironic.conf")
    # the paths Ironic's interfaces need exist, so it loads them on a machine that never
    # had /httpboot or /tftpboot
    for option in ("http_root", "tftp_root", "images_path", "instance_master_path",
                   "lock_path", "tempdir"):
        value = re.search(rf"^{option} = (.+)$", conf, re.M)
        assert value, option
        assert Path(value.group(1)).is_dir(), option


def test_nova_placement_and_rabbitmq_keep_every_path_in_the_lab(tmp_path: Path) -> None:
    lab = nova.NovaLab(str(tmp_path), "127.21.0.1", rabbit_password="x")
    assert_inside(nova._controller_conf(lab), tmp_path, "nova.conf")
    assert_inside(nova.placement_conf(lab), tmp_path, "placement.conf")
    assert "policy_file = " + str(tmp_path) in nova._controller_conf(lab)
    for name, text in nova.rabbit_files(lab).items():
        assert_inside(text, tmp_path, name)
    env = nova.rabbit_env(lab)
    assert_inside("\n".join(env.values()), tmp_path, "RabbitMQ's environment")
    # every RABBITMQ_* file or directory variable RabbitMQ reads is set (unset, it falls
    # back to /etc/rabbitmq, /var/lib/rabbitmq, /var/log/rabbitmq)
    for var in ("RABBITMQ_CONF_ENV_FILE", "RABBITMQ_CONFIG_FILE", "RABBITMQ_MNESIA_BASE",
                "RABBITMQ_LOG_BASE", "RABBITMQ_ENABLED_PLUGINS_FILE",
                "RABBITMQ_ADVANCED_CONFIG_FILE", "RABBITMQ_PID_FILE", "HOME"):
        assert Path(env[var]).is_relative_to(tmp_path), var


def test_libvirtd_sees_only_the_labs_directories(tmp_path: Path) -> None:
    lv = tmp_path / "libvirt"
    for name, text in libvirt_lab.private_files(lv).items():
        assert_inside(text, tmp_path, name)
    script = libvirt_lab.libvirtd_script(lv)
    binds = re.findall(r"mount --bind (\S+) (\S+);", script)
    assert sorted(target for _, target in binds) == sorted(libvirt_lab.PRIVATE_MOUNTS.values())
    assert all(Path(source).is_relative_to(lv) for source, _ in binds)
    assert f"--pid-file {lv}/run/libvirtd.pid" in script


def test_dnsmasq_keeps_leases_and_pid_file_in_the_lab(tmp_path: Path) -> None:
    net = ProvNet(tmp_path, 203)
    text = dnsmasq.render(dnsmasq.DnsmasqConfig(boot_url="http://10.203.0.1:8080",
                                                **net.dnsmasq_settings()))
    assert_inside(text, tmp_path, "dnsmasq.conf")
    # dnsmasq writes /run/dnsmasq.pid unless given one, and reads /etc/hosts unless told
    assert re.search(r"^pid-file=", text, re.M)
    assert re.search(r"^no-hosts", text, re.M)


def test_postgres_keeps_its_socket_in_the_lab(tmp_path: Path) -> None:
    opts = postgres.server_options(tmp_path / "pgdata", "127.20.4.2", 5432)
    assert_inside(opts, tmp_path, "PostgreSQL's options")
    assert "huge_pages=off" in opts


def test_glance_keeps_every_path_in_the_lab(tmp_path: Path) -> None:
    conf = glance.glance_conf(tmp_path, "127.21.0.4")
    assert_inside(conf.replace("file://", "file:"), tmp_path, "glance-api.conf")
    # Glance's defaults otherwise: /var/lib/glance/images, /tmp/staging, /etc/glance
    for option in ("filesystem_store_datadir", "image_cache_dir", "lock_path", "work_dir",
                   "policy_file", "config_file"):
        assert re.search(rf"^{option} = {re.escape(str(tmp_path))}/", conf, re.M), option
    assert f"node_staging_uri = file://{tmp_path}/glance/staging" in conf
    assert f"connection = sqlite:///{tmp_path}/glance/glance.sqlite" in conf


def test_nova_reaches_glance_and_the_neutron_stand_in_only_when_asked(tmp_path: Path) -> None:
    lab = nova.NovaLab(str(tmp_path), "127.21.0.1", rabbit_password="x")
    assert "[glance]" not in nova._controller_conf(lab)
    lab.image_service = True
    conf = nova._controller_conf(lab)
    assert "endpoint_override = http://127.21.0.5:9292" in conf
    assert "endpoint_override = http://127.21.0.6:9696" in conf
    assert "NUMATopologyFilter" in conf
    assert_inside(conf, tmp_path, "nova.conf")


def test_the_neutron_stand_in_answers_empty_listings_and_nothing_else() -> None:
    assert neutron_standin.answer("GET", "/v2.0/ports?device_id=x&fields=id") == \
        (200, {"ports": []})
    assert neutron_standin.answer("GET", "/v2.0/security-groups.json")[1] == \
        {"security_groups": []}
    status, body = neutron_standin.answer("POST", "/v2.0/ports")
    assert status == 404
    assert "stand-in" in body["NeutronError"]["message"]
