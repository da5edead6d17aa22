"""Real peers for the integration tests, started here and stopped at the end.

One lab for the whole session on 127.20.0.0/16 (the demo uses 127.10.0.0/16), built by
the same ``metalctl.lab`` code users run: sushy-tools emulators over TLS (fake and
libvirt drivers), RMCP+ IPMI BMCs, and a standalone Ironic.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metalctl import credentials
from metalctl.ironic import Ironic, IronicConfig
from metalctl.lab import rack

SPEC = rack.RackSpec(octet=20, redfish_bmcs=2, systems_per_bmc=2, ipmi_bmcs=2,
                     libvirt_domains=1, dead=1)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("lab")
    state = rack.up(SPEC, directory, install=os.environ.get("METALCTL_TEST_INSTALL") == "1")
    yield state
    rack.down(directory)


@pytest.fixture(scope="session")
def lab_creds(lab) -> credentials.CredentialSet:
    return credentials.resolve(rack.LAB_CREDENTIALS, Path(lab.credentials_file),
                               interactive=False)


@pytest.fixture(scope="session")
def lab_password(lab_creds) -> str:
    return lab_creds.entries[0].password.reveal()


@pytest.fixture
def ironic(lab) -> Ironic:
    """The lab Ironic, emptied before the test (nodes deleted, ports with them)."""
    ir = Ironic(IronicConfig(url=lab.ironic_url)).connect()
    for node in ir.nodes():
        if node.get("provision_state") in ("available", "manageable", "enroll",
                                           "inspect failed"):
            ir.client.node.delete(node["uuid"])
    return ir
