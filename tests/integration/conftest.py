"""Real peers for the integration tests, started here and stopped at the end.

One lab for the whole session on 127.20.0.0/16 (the demo uses 127.10.0.0/16), built by
the same ``metalctl_lab`` code users run: sushy-tools emulators over TLS (fake and
libvirt drivers), RMCP+ IPMI BMCs, and a standalone Ironic; and one lab Nova with its SSH
hosts for the hand-off modules (:func:`shared_nova`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from metalctl import credentials
from metalctl.ironic import Ironic, IronicConfig
from metalctl_lab import rack

from . import novalab

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


#: the session's shared Nova while it runs (see :func:`pytest_runtest_teardown`)
_SHARED: dict[str, novalab.SharedNova] = {}


@pytest.fixture(scope="session")
def shared_nova(tmp_path_factory: pytest.TempPathFactory):
    """One lab Nova with hosts h1, h2 and a site PKI for the session's hand-off modules
    (test_handoff, test_live_migration): see :mod:`.novalab`."""
    shared = novalab.start(tmp_path_factory.mktemp("nova-shared"))
    _SHARED["nova"] = shared
    yield shared
    if _SHARED.pop("nova", None):
        novalab.stop(shared)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Stop the shared Nova after the last test that uses it, not at the session's end: a
    later module may need its ports (test_nova_lab's "machine" RabbitMQ on 0.0.0.0:5672)
    and the memory (about 1 GiB)."""
    yield
    if "nova" not in _SHARED or "shared_nova" not in item.fixturenames:
        return
    items = item.session.items
    later = items[items.index(item) + 1:] if item in items else []
    if not any("shared_nova" in i.fixturenames for i in later):
        novalab.stop(_SHARED.pop("nova"))


#: what each module starts, as markers (``pytest tests -m "not install"`` and so on; the
#: tiers are in README.md). A new module must be listed: the check below fails otherwise.
TIERS: dict[str, tuple[str, ...]] = {
    "test_audit": ("hosts",),
    "test_audit_bmc": ("lab",),
    "test_audit_verdicts": ("hosts",),
    "test_bench_smoke": ("bench", "lab", "hosts", "nova"),
    "test_bmc_power": ("lab",),
    "test_bootservice": ("bootservice",),
    "test_cli": ("lab",),
    "test_discover": ("lab",),
    "test_discover_dmtf": ("bmc",),
    "test_discover_fixtures": ("bmc",),
    "test_enroll": ("lab",),
    "test_handoff": ("nova", "hosts"),
    "test_handoff_cell": ("nova", "hosts"),
    "test_harden": ("hosts",),
    "test_harden_remediate": ("hosts",),
    "test_hostile_bmc": ("bmc",),
    "test_lab_ironic_provnet": ("lab", "provnet"),
    "test_lab_paths": ("venvs",),
    "test_lab_pxe": ("install", "provnet"),
    "test_live_migration": ("nova", "hosts"),
    "test_nova_lab": ("nova",),
    "test_profile": ("lab",),
    "test_provision_lab": ("install", "provnet", "lab"),
    "test_provision_stage": ("bootservice", "hosts"),
    "test_provnet": ("provnet",),
    "test_run": ("lab", "hosts"),
    "test_run_handoff_lab": ("install", "provnet", "lab", "nova"),
    "test_run_lab": ("lab",),
    "test_runtime_faults": ("bmc",),
    "test_standin_installer": ("install",),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        path = Path(str(item.fspath))
        if path.parent != here:
            continue
        tiers = TIERS.get(path.stem)
        if tiers is None:
            raise pytest.UsageError(f"{path.name}: add it to TIERS in {__file__} (what it "
                                    "starts decides its tier)")
        for marker in tiers:
            item.add_marker(marker)
        if "venvs" not in tiers:
            item.add_marker("peers")
