"""nova.conf from a real derived plan, and its validation against nova 34's own options.

The validator cases run the real checker with the Nova venv's interpreter (installed by
``metalctl_lab.nova_venv`` when missing): every bad document below was accepted by
``oslo-config-validator`` (reference/lab-host-recipes.md section 6).
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest
import yaml

from metalctl import cpulist
from metalctl.errors import CredentialsError, InputError
from metalctl.handoff import novaconf, novaopts
from metalctl.pki import SitePKI
from metalctl.profile.derive import derive
from metalctl.profile.facts import inband
from metalctl.profile.library import ProfileLibrary
from metalctl.store import Store
from metalctl_lab import nova_venv

SAMPLES = Path(__file__).parent.parent / "samples" / "facts"
R750 = inband.parse((SAMPLES / "r750-2s-48c-512g.txt").read_text())
HOST, MY_IP = "r750", "10.0.0.7"
RABBIT_PASSWORD = "p@ss:w/rd%marker-7f3a"  # needs URL quoting in transport_url
KEYSTONE_PASSWORD = "ks-marker-91c2"


@pytest.fixture(scope="module")
def plan() -> dict:
    """nfv-dpdk on the R750: dedicated and shared CPUs, reserved 1G pages, VFs."""
    return derive(R750, ProfileLibrary().load("nfv-dpdk"), HOST).to_dict()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SitePKI:
    site_pki = SitePKI(tmp_path_factory.mktemp("pki"))
    site_pki.init()
    site_pki.issue(HOST, [f"{HOST}.example.net"], [MY_IP])
    return site_pki


@pytest.fixture
def creds_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KS_NOVA_PASSWORD", KEYSTONE_PASSWORD)
    path = tmp_path / "credentials.yaml"
    path.write_text(yaml.safe_dump({
        "rabbit-nova": [{"username": "nova", "password": RABBIT_PASSWORD}],
        "keystone-nova": [{"username": "nova", "password_env": "KS_NOVA_PASSWORD"}]}))
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


def site_data(**overrides: object) -> dict:
    data = {"transport": {"hosts": ["10.0.0.2:5672", "10.0.0.3:5672"],
                          "credentials": "rabbit-nova", "virtual_host": "nova"},
            "placement": {"auth_type": "password", "auth_url": "https://keystone:5000/v3",
                          "credentials": "keystone-nova", "project_name": "service",
                          "user_domain_name": "Default", "project_domain_name": "Default",
                          "region_name": "RegionOne", "valid_interfaces": ["internal"]},
            "state_path": "/var/lib/nova"}
    data.update(overrides)
    return data


@pytest.fixture
def site(creds_file: Path) -> novaconf.NovaSite:
    return novaconf.site_from_dict(site_data(), "site.yaml", creds_file)


@pytest.fixture
def conf(plan: dict, site: novaconf.NovaSite, pki: SitePKI) -> novaconf.NovaConf:
    return novaconf.render(plan, site, HOST, MY_IP, pki)


# --- rendering -------------------------------------------------------------------------


def test_plan_options_land_in_nova_sections(plan: dict, conf: novaconf.NovaConf):
    nova = plan["nova"]
    assert conf.get("compute", "cpu_dedicated_set") == [nova["compute"]["cpu_dedicated_set"]]
    assert conf.get("compute", "cpu_shared_set") == [nova["compute"]["cpu_shared_set"]]
    assert conf.get("DEFAULT", "reserved_host_memory_mb") == ["4096"]
    # a MultiOpt: one line per NUMA node's reservation
    assert conf.get("DEFAULT", "reserved_huge_pages") == [
        "node:0,size:1048576,count:1", "node:1,size:1048576,count:3"]
    assert [json.loads(v) for v in conf.get("pci", "device_spec")] == \
        nova["pci"]["device_spec"]
    assert [json.loads(v) for v in conf.get("pci", "alias")] == nova["pci"]["alias"]
    assert conf.get("DEFAULT", "host") == [HOST]
    assert conf.get("DEFAULT", "my_ip") == [MY_IP]
    assert conf.get("libvirt", "live_migration_inbound_addr") == [MY_IP]
    assert conf.get("libvirt", "live_migration_scheme") == ["tls"]
    assert conf.get("libvirt", "live_migration_with_native_tls") == ["true"]
    assert conf.get("DEFAULT", "state_path") == ["/var/lib/nova"]
    # standalone compute: no database, no API middleware
    assert not {"database", "api_database", "keystone_authtoken"} & set(conf.sections)


def test_cpu_sets_cover_what_the_plan_isolated(plan: dict, conf: novaconf.NovaConf):
    dedicated = cpulist.parse(conf.get("compute", "cpu_dedicated_set")[0])
    shared = cpulist.parse(conf.get("compute", "cpu_shared_set")[0])
    assert not dedicated & shared
    assert dedicated == cpulist.parse(plan["isolated_cpus"]) - {
        c for n in plan["numa"] for c in n["pmd_cpus"]}


def test_secrets_are_masked_until_revealed(conf: novaconf.NovaConf):
    for shown in (conf.masked(), str(conf), f"{conf}", repr(conf)):
        assert RABBIT_PASSWORD not in shown
        assert KEYSTONE_PASSWORD not in shown
    assert conf.get("DEFAULT", "transport_url") == [
        "rabbit://nova:***@10.0.0.2:5672,nova:***@10.0.0.3:5672/nova"]
    assert conf.get("placement", "password") == ["***"]
    real = conf.reveal()
    assert "rabbit://nova:p%40ss%3Aw%2Frd%25marker-7f3a@10.0.0.2:5672," in real
    assert f"password = {KEYSTONE_PASSWORD}\n" in real
    assert {s.reveal() for s in conf.secrets()} == {RABBIT_PASSWORD, KEYSTONE_PASSWORD}


def test_report_in_placement_only_where_nova_reports_devices(
        plan: dict, site: novaconf.NovaSite, pki: SitePKI, creds_file: Path):
    asked = novaconf.site_from_dict(site_data(pci_report_in_placement=True), "site.yaml",
                                    creds_file)
    # every spec of the plan has a physical_network: Nova 34 skips those in Placement
    conf = novaconf.render(plan, asked, HOST, MY_IP, pki)
    assert conf.get("pci", "report_in_placement") == []
    assert "physical_network" in conf.notes[0]
    generic = json.loads(json.dumps(plan))
    generic["nova"]["pci"]["device_spec"].append({"vendor_id": "10de", "product_id": "2330"})
    conf = novaconf.render(generic, asked, HOST, MY_IP, pki)
    assert conf.get("pci", "report_in_placement") == ["true"]


def test_stored_plan_comes_from_the_profile_stage_record(tmp_path: Path, plan: dict):
    with Store(tmp_path / "s.db") as store:
        store.put_data("node-key", "plan", {"profile": "nfv-dpdk", "plan": plan})
        assert novaconf.stored_plan(store, "node-key", HOST)["nova"] == plan["nova"]
        with pytest.raises(InputError, match="no derived plan"):
            novaconf.stored_plan(store, "other-key", "cn-2")


# --- refusals before rendering ----------------------------------------------------------


@pytest.mark.parametrize(("change", "field"), [
    ({"transprt": {}}, "nova.transprt"),
    ({"libvirt": {"live_migration": {"scheme": "tsl"}}}, "nova.libvirt.live_migration.scheme"),
    ({"libvirt": {"virt_type": "kvmm"}}, "nova.libvirt.virt_type"),
    ({"placement": {"auth_type": "admin_token", "credentials": "rabbit-nova"}},
     "nova.placement.endpoint"),
    ({"transport": {"hosts": ["rabbit.example.net"], "credentials": "rabbit-nova"}},
     "nova.transport.hosts[0]"),
])
def test_site_section_is_validated_by_its_schema(creds_file: Path, change: dict, field: str):
    with pytest.raises(InputError) as err:
        novaconf.site_from_dict(site_data(**change), "site.yaml", creds_file)
    assert err.value.field == field


def test_missing_credential_set_is_named(creds_file: Path):
    data = site_data(transport={"hosts": ["10.0.0.2:5672"], "credentials": "rabbit-x"})
    with pytest.raises(CredentialsError, match="rabbit-x"):
        novaconf.site_from_dict(data, "site.yaml", creds_file)


def test_site_options_cannot_override_the_plan(plan: dict, pki: SitePKI, creds_file: Path):
    data = site_data(options={"compute": {"cpu_shared_set": "0-95"}})
    site = novaconf.site_from_dict(data, "site.yaml", creds_file)
    with pytest.raises(InputError) as err:
        novaconf.render(plan, site, HOST, MY_IP, pki)
    assert err.value.field == "nova.options.compute.cpu_shared_set"


def test_tls_migration_needs_certificates_naming_the_migration_address(
        plan: dict, site: novaconf.NovaSite, pki: SitePKI):
    with pytest.raises(InputError, match="site PKI"):
        novaconf.render(plan, site, HOST, MY_IP, None)
    with pytest.raises(InputError, match="no certificates issued for cn-9"):
        novaconf.render(plan, site, "cn-9", MY_IP, pki)
    with pytest.raises(InputError, match="does not name 10.0.0.99") as err:
        novaconf.render(plan, site, HOST, "10.0.0.99", pki)
    assert err.value.field == "servercert.pem"


def test_consoles_follow_the_management_address(plan: dict, conf: novaconf.NovaConf,
                                                 pki: SitePKI, creds_file: Path):
    # Nova's default 127.0.0.1 reaches no console proxy elsewhere, and a live migration
    # would carry it to the destination: server_listen follows my_ip, as migrations do
    assert conf.get("vnc", "enabled") == ["true"]
    assert conf.get("vnc", "server_listen") == [MY_IP]
    assert conf.get("vnc", "server_proxyclient_address") == [MY_IP]
    assert conf.get("libvirt", "live_migration_inbound_addr") == [MY_IP]
    assert conf.get("vnc", "novncproxy_base_url") == []
    url = "https://console.example.net:6080/vnc_auto.html"
    site = novaconf.site_from_dict(site_data(vnc={"novncproxy_base_url": url}), "site.yaml",
                                   creds_file)
    assert novaconf.render(plan, site, HOST, MY_IP, pki).get("vnc", "novncproxy_base_url") \
        == [url]
    off = novaconf.site_from_dict(site_data(vnc={"enabled": False}), "site.yaml", creds_file)
    rendered = novaconf.render(plan, off, HOST, MY_IP, pki)
    assert [o for s_, o in rendered.options() if s_ == "vnc"] == ["enabled"]
    assert rendered.get("vnc", "enabled") == ["false"]
    with pytest.raises(InputError) as err:  # the site cannot move consoles elsewhere
        novaconf.render(plan, novaconf.site_from_dict(
            site_data(options={"vnc": {"server_listen": "0.0.0.0"}}), "site.yaml",
            creds_file), HOST, MY_IP, pki)
    assert err.value.field == "nova.options.vnc.server_listen"
    with pytest.raises(InputError) as err:
        novaconf.site_from_dict(site_data(vnc={"novncproxy_base_url": "console:6080"}),
                                "site.yaml", creds_file)
    assert err.value.field.startswith("nova.vnc.novncproxy_base_url")


# --- Nova's own option definitions --------------------------------------------------------


@pytest.fixture(scope="module")
def nova_python() -> Path:
    return nova_venv.python()


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


@pytest.mark.venvs
def test_rendered_config_passes_nova_and_each_bad_value_is_refused(
        conf: novaconf.NovaConf, nova_python: Path):
    good = conf.masked()
    dedicated = conf.get("compute", "cpu_dedicated_set")[0]
    bad = {
        "misspelled option": (_replace(good, "reserved_host_memory_mb =",
                                       "reserved_host_memry_mb ="),
                              "[DEFAULT] reserved_host_memry_mb", "reserved_host_memory_mb"),
        "misspelled section": (_replace(good, "[libvirt]", "[libvirtt]"), "[libvirtt]",
                               "did you mean 'libvirt'"),
        "virt_type": (_replace(good, "virt_type = kvm", "virt_type = kvmm"),
                      "[libvirt] virt_type", "kvmm"),
        "not an integer": (_replace(good, "reserved_host_memory_mb = 4096",
                                    "reserved_host_memory_mb = 4GB"),
                           "[DEFAULT] reserved_host_memory_mb", "4GB"),
        "bad CPU spec": (_replace(good, f"cpu_dedicated_set = {dedicated}",
                                  f"cpu_dedicated_set = {dedicated},x"),
                         "[compute] cpu_dedicated_set", "'x'"),
        "overlapping CPU sets": (_replace(good, f"cpu_dedicated_set = {dedicated}",
                                          f"cpu_dedicated_set = 0,{dedicated}"),
                                 "[compute] cpu_dedicated_set", "overlaps cpu_shared_set"),
        "bad PCI JSON": (_replace(good, '"address": "0000:31:00.0"}',
                                  '"address": "0000:31:00.0"'),
                         "[pci] device_spec", "not JSON"),
        "bad PCI alias": (_replace(good, '"device_type": "type-VF"',
                                   '"device_type": "type-XX"'),
                          "[pci] alias", "type-XX"),
        "migration scheme typo": (_replace(good, "live_migration_scheme = tls",
                                           "live_migration_scheme = tsl"),
                                  "[libvirt] live_migration_scheme", "allow-list"),
        "database section": (good + "\n[database]\nconnection = sqlite://\n", "[database]",
                             "database"),
        "placement plugin option": (_replace(good, "auth_type = password",
                                             "auth_type = passwd"),
                                    "[placement] auth_type", "passwd"),
        # Nova's own HostAddressOpt refuses what is no address
        "console address": (_replace(good, f"server_listen = {MY_IP}",
                                     "server_listen = 10.0.0.300:5900"),
                            "[vnc] server_listen", "10.0.0.300:5900"),
        "console on loopback": (_replace(good, f"server_proxyclient_address = {MY_IP}",
                                         "server_proxyclient_address = 127.0.0.1"),
                                "[vnc] server_proxyclient_address", "loopback"),
        "console everywhere": (_replace(good, f"server_listen = {MY_IP}",
                                        "server_listen = 0.0.0.0"),
                               "[vnc] server_listen", "every network"),
        "console by default": (_replace(good, f"server_listen = {MY_IP}\n", ""),
                               "[vnc] server_listen", "loopback"),
    }
    started = time.monotonic()
    outcomes = novaopts.validate_many({"good": good, **{k: v[0] for k, v in bad.items()}},
                                      python=nova_python)
    elapsed = time.monotonic() - started
    print(f"\nvalidator: {len(outcomes)} documents in {elapsed:.2f} s")
    passed = outcomes.pop("good")
    assert isinstance(passed, novaopts.Validation), passed
    assert passed.nova_version == "34.0.0"
    assert passed.warnings == []
    for name, (text, field, why) in bad.items():
        err = outcomes[name]
        assert isinstance(err, novaopts.NovaConfigError), name
        assert isinstance(err, InputError)
        assert [p.field for p in err.problems] == [field], (name, err.problems)
        assert why in err.reason, (name, err.reason)
        line = text.splitlines()[err.line - 1]
        assert line.split("=")[0].strip().strip("[]") in field, (name, line)
    # the one wording of input errors: label:line: field: reason
    line = outcomes["virt_type"].line
    assert str(outcomes["virt_type"]).startswith(
        f"virt_type:{line}: [libvirt] virt_type: 'kvmm' is not valid")


def test_validator_without_nova_is_its_own_error(tmp_path: Path):
    with pytest.raises(novaopts.NovaValidatorError, match="cannot run"):
        novaopts.validate("[DEFAULT]\n", python=tmp_path / "no-python")
