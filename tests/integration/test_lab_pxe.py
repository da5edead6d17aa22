"""Lab machines that really network-boot: a libvirt domain behind the lab's Redfish BMC,
on the provisioning network (:mod:`metalctl_lab.provnet`), powered on with a one-time PXE
boot through :mod:`metalctl.bmc.power`.

The chain is all real: sushy-emulator sets the boot device and starts QEMU (TCG) in the
private libvirtd inside the namespace; SeaBIOS runs QEMU's own iPXE ROM, which gets a
pinned address and the boot URL from dnsmasq (configuration rendered by
:mod:`metalctl.provision.dnsmasq`); iPXE fetches its per-MAC script from
:class:`~metalctl.provision.bootservice.BootService` on the host side of the network,
then Debian's kernel and an initramfs; the installer fetches its kickstart with the
ticket its boot script carried and calls back ``hostkeys`` and ``end`` with the token
the kickstart carried, from the address dnsmasq pinned to its MAC (the service reads
dnsmasq's files, as ``metalctl serve --dnsmasq-conf`` does).

Own lab on 127.26 and provisioning network 10.203.0.0/24 (not the shared session lab):
run this module alone, never two copies at once. One machine boots at a time; each
boot is allowed 300 s, as under load on 2 shared cores.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from metalctl import credentials, discover
from metalctl.bmc import power
from metalctl.budget import Budget
from metalctl.netaddrs import parse_targets
from metalctl.provision.bootserver import Request, Response
from metalctl.provision.bootservice import LOCAL_BOOT_SCRIPT, TOKEN_PLACEHOLDER, BootService
from metalctl.provision.bootstate import ACTIVE, INSTALLED, BootFiles
from metalctl.provision.dnsmasq import DnsmasqLeases
from metalctl_lab import cli as cli_lab
from metalctl_lab import libvirt_lab, rack

from .tinyinstaller import TinyInstaller

SPEC = rack.RackSpec(octet=26, redfish_bmcs=0, ipmi_bmcs=0, libvirt_domains=1, dead=0,
                     ironic=False, provnet=203)
BUDGET = Budget(connect_timeout_s=2, read_timeout_s=20, deadline_s=90)
BOOT_TIMEOUT_S = 300.0
NODE = "lab26-kvm-0"
HOSTKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBwVqRzSjRL0qXf4Agq5lolWPkclGKovpv1yIcEXdLN/"
KICKSTART = f"""# a kickstart as metalctl serves it (the tiny installer only reads it)
# hostkey: {HOSTKEY}
text
%post --nochroot
curl -X POST -H "Authorization: Bearer {TOKEN_PLACEHOLDER}" http://boot/callback/{NODE}
%end
"""


class RecordingBootService(BootService):
    """The real boot service, recording every answer (time, method, path, status, body)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.seen: list[tuple[float, str, str, int, bytes]] = []

    def route(self, req: Request) -> Response:
        resp = super().route(req)
        self.seen.append((time.monotonic(), req.method, req.path, resp.status, resp.body))
        return resp

    def answers(self, method: str, path_prefix: str) -> list[tuple[float, int, bytes]]:
        return [(t, status, body) for t, m, p, status, body in list(self.seen)
                if m == method and p.startswith(path_prefix)]


@pytest.fixture(scope="module")
def pxe_lab(tmp_path_factory: pytest.TempPathFactory):
    with rack.running(SPEC, tmp_path_factory.mktemp("pxelab")) as state:
        yield state


@pytest.fixture(scope="module")
def kvm(pxe_lab):
    creds = credentials.resolve(rack.LAB_CREDENTIALS, Path(pxe_lab.credentials_file),
                                interactive=False)
    opts = discover.DiscoverOptions(verify=pxe_lab.ca_bundle, budget=BUDGET)
    records = [r for r in discover.discover(parse_targets([SPEC.libvirt_address]), creds, opts)
               if r.status.value == "ok"]
    assert len(records) == 1
    record = records[0]
    yield record, creds
    power.power_off(record, creds, pxe_lab.ca_bundle, BUDGET)


@pytest.fixture(scope="module")
def boot_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BootFiles]:
    """The installer the domain boots: a parameter, so the full stand-in can replace it."""
    files = tmp_path_factory.mktemp("bootfiles")
    tiny = TinyInstaller().build(files)
    return files, BootFiles(tiny.kernel, tiny.initrd, kernel_args=tiny.kernel_args)


@pytest.fixture(scope="module")
def served(pxe_lab, boot_files, tmp_path_factory: pytest.TempPathFactory):
    """The boot service on the host side of the provisioning network, and dnsmasq
    pointing iPXE at it (the domain's MAC pinned to its address), as `lab up` starts it."""
    net = rack.provnet(pxe_lab)
    assert net is not None
    files, _ = boot_files
    svc = RecordingBootService(net.host_address, 0, tmp_path_factory.mktemp("bootstate"),
                               files_dir=files, tick_s=1.0,
                               dhcp=DnsmasqLeases(net.files / "dnsmasq.conf")).start()
    try:
        # what `metalctl lab up` runs: metalctl.provision.dnsmasq's file, MACs pinned
        assert cli_lab.start_dnsmasq(SPEC, pxe_lab, svc.port) == svc.url
        assert f"dhcp-host={libvirt_lab.domain_mac(SPEC, 0)},{net.pinned_address(0)},{NODE}" \
            in (net.files / "dnsmasq.conf").read_text()
        yield svc, net
    finally:
        net.stop_dnsmasq()
        svc.stop()


def _wait(what: str, done, timeout_s: float = BOOT_TIMEOUT_S, every_s: float = 0.5,
          evidence=lambda: ""):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = done()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s:.0f} s\n{evidence()}")


def _evidence(svc: RecordingBootService, net, console: Path) -> str:
    """What the boot path did so far, for a failure message."""
    requests = [f"{m} {p} -> {int(s)}" for _, m, p, s, _ in list(svc.seen)]
    dhcp = [ln for ln in net.dnsmasq_log.read_text(errors="replace").splitlines()
            if "DHCP" in ln and "option" not in ln][-8:]
    tail = console.read_text(errors="replace")[-1500:] if console.exists() else "(none)"
    return (f"boot service saw: {requests}\ndnsmasq: {dhcp}\nconsole tail:\n{tail}")


def _wait_off(record, creds, ca: str) -> None:
    _wait("domain powered itself off",
          lambda: power.power_state(record, creds, ca, BUDGET) == power.OFF, 120, 2.0)


def test_one_time_pxe_boot_reaches_the_installer_and_its_callback(pxe_lab, kvm, served,
                                                                  boot_files, capsys):
    record, creds = kvm
    svc, net = served
    _, files = boot_files
    mac = libvirt_lab.domain_mac(SPEC, 0)
    hyphen = mac.replace(":", "-")
    console = libvirt_lab.serial_log(Path(pxe_lab.directory), 0)
    svc.add_install(NODE, mac, KICKSTART, files, deadline_s=BOOT_TIMEOUT_S + 60)

    result = power.network_boot(record, creds, pxe_lab.ca_bundle, BUDGET)
    powered_on = time.monotonic()
    assert result.power_before == power.OFF
    assert result.actions == ("boot-once:Pxe", "On")

    _wait("install ended", lambda: svc.install(NODE).state != ACTIVE,
          evidence=lambda: _evidence(svc, net, console))
    install = svc.install(NODE)
    assert install.state == INSTALLED, (install.state, install.error,
                                        console.read_text(errors="replace")[-2000:])

    # DHCP: the pinned address, leased by dnsmasq to the domain's provisioning NIC
    assert any(lease.mac == mac and lease.ip == net.pinned_address(0)
               for lease in net.leases())
    assert f"DHCPACK(mcprov203br) {net.pinned_address(0)} {mac}" in \
        net.dnsmasq_log.read_text()
    # iPXE asked for the entry script, then its own per-MAC script: the installer chain
    assert [s for _, s, _ in svc.answers("GET", "/boot.ipxe")] == [200]
    scripts = svc.answers("GET", f"/boot/{hyphen}.ipxe")
    assert scripts
    assert scripts[0][1] == 200
    assert b"kernel --name vmlinuz" in scripts[0][2]
    assert b"inst.ks=" in scripts[0][2]
    # the kernel and initrd came from the service, the kickstart exactly once, with a token
    assert {p for _, m, p, s, _ in svc.seen if p.startswith("/files/") and s == 200} == {
        f"/files/{files.kernel}", f"/files/{files.initrd}"}
    kickstarts = svc.answers("GET", f"/ks/{NODE}")
    assert [s for _, s, _ in kickstarts] == [200]
    assert TOKEN_PLACEHOLDER.encode() not in kickstarts[0][2]
    stages = [e.stage for e in svc.events(NODE)]
    assert stages.count("kickstart-fetched") == 1
    assert "end" in stages
    assert not [s for s in stages if s.endswith("-refused")]
    # bound to the address dnsmasq pinned to the MAC; the machine's own key trusted
    assert install.bound_address == net.pinned_address(0)
    assert [k.blob_b64 for k in install.hostkeys] == [HOSTKEY.split()[1]]
    callbacks = svc.answers("POST", f"/callback/{NODE}")
    assert [s for _, s, _ in callbacks] == [200, 200]
    # the serial console was captured from firmware to the installer's last words
    _wait_off(record, creds, pxe_lab.ca_bundle)
    text = console.read_text(errors="replace")
    assert "Linux version" in text
    assert "tiny-installer: kickstart fetched" in text
    assert "tiny-installer: end callback sent" in text

    to_kickstart = kickstarts[0][0] - powered_on
    to_end = callbacks[-1][0] - powered_on
    with capsys.disabled():
        print(f"\n[pxe] power-on -> kickstart fetched {to_kickstart:.1f} s, "
              f"-> end callback {to_end:.1f} s (power request {result.duration_s:.1f} s)")
    assert to_kickstart < BOOT_TIMEOUT_S


def test_a_mac_without_an_install_gets_the_local_boot_script(pxe_lab, kvm, served):
    record, creds = kvm
    svc, net = served
    mac = libvirt_lab.domain_mac(SPEC, 0)
    hyphen = mac.replace(":", "-")
    assert svc.state.active_by_mac(mac) is None
    console = libvirt_lab.serial_log(Path(pxe_lab.directory), 0)
    before_console = console.read_bytes() if console.exists() else b""
    before = len(svc.answers("GET", f"/boot/{hyphen}.ipxe"))
    power.power_off(record, creds, pxe_lab.ca_bundle, BUDGET)
    result = power.network_boot(record, creds, pxe_lab.ca_bundle, BUDGET)
    assert result.actions[-1] == "On"
    answers = _wait("per-MAC script asked for",
                    lambda: svc.answers("GET", f"/boot/{hyphen}.ipxe")[before:],
                    evidence=lambda: _evidence(svc, net, console))
    assert answers[0][1] == 200
    assert answers[0][2] == LOCAL_BOOT_SCRIPT.encode()
    assert not svc.answers("GET", "/ks/")[1:]  # nothing more than the first test's fetch
    power.power_off(record, creds, pxe_lab.ca_bundle, BUDGET)
    # append='on': the new power-on did not truncate the earlier boots' console
    assert console.read_bytes().startswith(before_console)
