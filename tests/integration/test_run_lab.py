"""``metalctl run`` on the shared session lab (127.20; run under
``flock /tmp/metalctl-integration.lock``): the libvirt-backed machine's BIOS is set by
the profile stage of the pipeline, checked on the BMC itself."""

from __future__ import annotations

import json

from metalctl.profile import bios
from metalctl.store import Store
from metalctl_lab import libvirt_lab

from .conftest import SPEC
from .labrun import FAST, env_of, metalctl, rack_file, records


def test_run_profiles_the_libvirt_machine_through_its_bmc(lab, lab_creds, ironic, tmp_path):
    rec = records(lab, lab_creds, SPEC.libvirt_address)[0]
    with bios.RedfishBios(rec, lab_creds, lab.ca_bundle, FAST) as backend:
        backend.write(dict(libvirt_lab.BIOS_DEFAULTS))
        assert backend.state().current["ProcVirtualization"] == "Disabled"
    path = rack_file(tmp_path, lab, bmc={"ranges": [SPEC.libvirt_address],
                                         "credentials": ["lab"]},
                     ironic={"url": lab.ironic_url},
                     profiles={"default": "compute-general", "bios": "required",
                               "rules": [{"when": {"manufacturer": "nobody*"},
                                          "profile": "hpc"}]})
    env = env_of(lab, tmp_path)
    try:
        proc = metalctl(["run", str(path), "-o", "json"], env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        node = json.loads(proc.stdout)["nodes"][0]
        assert node["evidence"]["profile"]["profile"] == "compute-general"
        assert node["evidence"]["profile"]["bios"] == "applied"
        with bios.RedfishBios(rec, lab_creds, lab.ca_bundle, FAST) as backend:
            assert backend.state().current["ProcVirtualization"] == "Enabled"  # on the BMC
        with Store(tmp_path / "store.db").open() as store:
            key = store.nodes()[0]["key"]
            assert store.get_data(key, "bios")["profile"] == "compute-general"
            assert store.node(key)["state"] == "profiled"
        again = json.loads(metalctl(["run", str(path), "-o", "json"], env).stdout)
        assert again["nodes"][0]["steps"]["profile"] == "skipped"
    finally:
        with bios.RedfishBios(rec, lab_creds, lab.ca_bundle, FAST) as backend:
            backend.write(dict(libvirt_lab.BIOS_DEFAULTS))
