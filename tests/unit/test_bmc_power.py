"""metalctl.bmc.power against scripted BMCs: a Redfish service on loopback (real HTTP,
through sushy and the guarded transport) whose power state and allowed reset types
each test scripts, and a scripted pyghmi command object for IPMI."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pyghmi import exceptions as ipmi_exc

from metalctl.bmc import ipmi, power
from metalctl.budget import Budget
from metalctl.credentials import Credential, CredentialSet, Secret
from metalctl.errors import BmcAuthFailed, BmcProtocolError, BmcTimeout
from metalctl.model.node import DiscoveryRecord, Protocol, Status

PASSWORD = "s3cret-pw"  # noqa: S105 - the scripted BMC's password
CREDS = CredentialSet("lab", (Credential("admin", Secret(PASSWORD)),))
FAST = Budget(connect_timeout_s=1, read_timeout_s=3, deadline_s=8, attempts=1, backoff_s=0)
SYSTEM = "/redfish/v1/Systems/1"
RESET = f"{SYSTEM}/Actions/ComputerSystem.Reset"


class ScriptedRedfish:
    """What the BMC answers, and what it was sent."""

    def __init__(self, power_state: str = "Off",
                 resets: tuple[str, ...] = ("On", "ForceOff", "ForceRestart")) -> None:
        self.power_states = [power_state]  # read in order; the last one stays
        self.resets = list(resets)
        self.patches: list[dict[str, Any]] = []
        self.posts: list[str] = []
        self.patch_error: dict[str, Any] | None = None
        self.after_reset: dict[str, list[str]] = {"On": ["On"], "ForceOff": ["Off"],
                                                  "ForceRestart": ["On"]}

    def power(self) -> str:
        return self.power_states.pop(0) if len(self.power_states) > 1 else self.power_states[0]

    def system(self) -> dict[str, Any]:
        return {
            "@odata.id": SYSTEM, "@odata.type": "#ComputerSystem.v1_10_0.ComputerSystem",
            "Id": "1", "Name": "scripted", "PowerState": self.power(),
            "Boot": {"BootSourceOverrideTarget": "None",
                     "BootSourceOverrideEnabled": "Disabled",
                     "BootSourceOverrideTarget@Redfish.AllowableValues": ["Pxe", "Hdd", "None"]},
            "Actions": {"#ComputerSystem.Reset": {
                "target": RESET, "ResetType@Redfish.AllowableValues": self.resets}},
        }


def _handler(bmc: ScriptedRedfish) -> type[BaseHTTPRequestHandler]:
    token = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, status: int, doc: dict[str, Any] | None = None) -> None:
            body = json.dumps(doc).encode() if doc is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _authorised(self) -> bool:
            if self.path.rstrip("/") == "/redfish/v1":
                return True
            if self.headers.get("Authorization") == f"Basic {token}":
                return True
            self._send(401, {"error": {"code": "Base.1.0.GeneralError",
                                       "message": "Authorization required"}})
            return False

        def _body(self) -> dict[str, Any]:
            size = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(size) or b"{}")

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if not self._authorised():
                return
            path = self.path.rstrip("/")
            if path == "/redfish/v1":
                self._send(200, {"@odata.id": "/redfish/v1/", "Id": "RootService",
                                 "RedfishVersion": "1.6.0",
                                 "Systems": {"@odata.id": "/redfish/v1/Systems"}})
            elif path == "/redfish/v1/Systems":
                self._send(200, {"@odata.id": "/redfish/v1/Systems",
                                 "Members": [{"@odata.id": SYSTEM}],
                                 "Members@odata.count": 1})
            elif path == SYSTEM:
                self._send(200, bmc.system())
            else:
                self._send(404, {"error": {"code": "Base.1.0.ResourceMissingAtURI",
                                           "message": "not here"}})

        def do_PATCH(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if bmc.patch_error is not None:
                self._send(400, bmc.patch_error)
                return
            bmc.patches.append(self._body())
            self._send(204)

        def do_POST(self) -> None:  # noqa: N802
            if not self._authorised():
                return
            if self.path == "/redfish/v1/SessionService/Sessions":
                self._send(404, {"error": {"code": "Base.1.0.GeneralError",
                                           "message": "no sessions"}})
                return
            reset = self._body().get("ResetType", "")
            bmc.posts.append(reset)
            bmc.power_states = list(bmc.after_reset.get(reset, bmc.power_states))
            self._send(204)

    return Handler


@contextmanager
def scripted(bmc: ScriptedRedfish) -> Iterator[DiscoveryRecord]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(bmc))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield DiscoveryRecord(address="127.0.0.1", port=server.server_address[1],
                              protocol=Protocol.REDFISH, status=Status.OK, scheme="http",
                              system_id=SYSTEM)
    finally:
        server.shutdown()
        server.server_close()


def test_redfish_off_gets_a_one_time_pxe_override_then_on():
    bmc = ScriptedRedfish("Off")
    with scripted(bmc) as record:
        result = power.network_boot(record, CREDS, False, FAST)
    assert bmc.patches == [{"Boot": {"BootSourceOverrideTarget": "Pxe",
                                     "BootSourceOverrideEnabled": "Once"}}]
    assert bmc.posts == ["On"]
    assert result.power_before == power.OFF
    assert result.actions == ("boot-once:Pxe", "On")


def test_redfish_on_is_force_restarted():
    bmc = ScriptedRedfish("On")
    with scripted(bmc) as record:
        result = power.network_boot(record, CREDS, False, FAST)
    assert bmc.posts == ["ForceRestart"]
    assert result.power_before == power.ON


def test_redfish_without_force_restart_goes_off_waits_then_on():
    bmc = ScriptedRedfish("On", resets=("On", "ForceOff"))
    # the power change lands late, as on real BMCs: two reads still say On
    bmc.after_reset["ForceOff"] = ["On", "On", "Off"]
    with scripted(bmc) as record:
        result = power.network_boot(record, CREDS, False, FAST)
    assert bmc.posts == ["ForceOff", "On"]
    assert result.actions == ("boot-once:Pxe", "ForceOff", "On")


def test_redfish_transitional_state_is_waited_out():
    bmc = ScriptedRedfish("PoweringOff")
    bmc.power_states = ["PoweringOff", "PoweringOff", "Off"]
    with scripted(bmc) as record:
        result = power.network_boot(record, CREDS, False, FAST)
    assert result.power_before == power.OFF
    assert bmc.posts == ["On"]


def test_redfish_state_that_never_settles_is_a_timeout():
    bmc = ScriptedRedfish("PoweringOn")
    budget = Budget(connect_timeout_s=1, read_timeout_s=2, deadline_s=2, attempts=1)
    with scripted(bmc) as record, pytest.raises(BmcTimeout) as info:
        power.network_boot(record, CREDS, False, budget)
    assert "PoweringOn" in str(info.value)
    assert bmc.posts == []


def test_redfish_wrong_password_is_auth_failed_and_names_no_secret():
    bmc = ScriptedRedfish("Off")
    wrong = CredentialSet("lab", (Credential("admin", Secret("not-the-password")),))
    with scripted(bmc) as record, pytest.raises(BmcAuthFailed) as info:
        power.network_boot(record, wrong, False, FAST)
    assert info.value.status == "auth-failed"
    assert "not-the-password" not in str(info.value)
    assert bmc.patches == []
    assert bmc.posts == []


def test_redfish_refusal_carries_the_bmcs_reason_and_nothing_is_powered():
    bmc = ScriptedRedfish("Off")
    bmc.patch_error = {"error": {
        "code": "Base.1.0.GeneralError", "message": "A general error has occurred.",
        "@Message.ExtendedInfo": [{"MessageId": "Base.1.0.PropertyValueNotInList",
                                   "Message": "Boot override refused: BIOS in setup \x1b[2J"
                                              f" (user admin password {PASSWORD})"}]}}
    with scripted(bmc) as record, pytest.raises(BmcProtocolError) as info:
        power.network_boot(record, CREDS, False, FAST)
    text = str(info.value)
    assert "HTTP 400" in text
    assert "BIOS in setup" in text
    assert PASSWORD not in text  # the BMC echoed it; the message never carries it
    assert "\x1b" not in text
    assert bmc.posts == []


def test_redfish_power_state_and_off():
    bmc = ScriptedRedfish("On")
    with scripted(bmc) as record:
        assert power.power_state(record, CREDS, False, FAST) == power.ON
        result = power.power_off(record, CREDS, False, FAST)
        assert result.actions == ("ForceOff",)
        assert power.power_off(record, CREDS, False, FAST).actions == ()
    assert bmc.posts == ["ForceOff"]


class ScriptedIpmi:
    """pyghmi's Command, as power.py uses it."""

    def __init__(self, state: str, fail: str | None = None) -> None:
        self.state, self.fail = state, fail
        self.calls: list[tuple[str, ...]] = []
        self.ipmi_session = self

    def logout(self) -> None:
        self.calls.append(("logout",))

    def set_bootdev(self, bootdev: str, persist: bool = False) -> dict[str, Any]:
        if self.fail:
            raise ipmi_exc.IpmiException(self.fail)
        self.calls.append(("set_bootdev", bootdev, str(persist)))
        return {"bootdev": bootdev}

    def get_power(self) -> dict[str, str]:
        return {"powerstate": self.state}

    def set_power(self, state: str) -> dict[str, str]:
        self.calls.append(("set_power", state))
        self.state = "off" if state == "off" else "on"
        return {"pendingpowerstate": state}


@pytest.fixture
def ipmi_bmc(monkeypatch: pytest.MonkeyPatch):
    def use(cmd: ScriptedIpmi) -> DiscoveryRecord:
        monkeypatch.setattr(ipmi, "login", lambda *a, **k: (cmd, CREDS.entries[0]))
        return DiscoveryRecord(address="127.0.0.9", port=623, protocol=Protocol.IPMI,
                               status=Status.OK)
    return use


@pytest.mark.parametrize(("state", "action"), [("off", "on"), ("on", "reset")])
def test_ipmi_next_boot_from_the_network_then_on_or_reset(ipmi_bmc, state, action):
    cmd = ScriptedIpmi(state)
    result = power.network_boot(ipmi_bmc(cmd), CREDS, True, FAST)
    assert cmd.calls == [("set_bootdev", "network", "False"), ("set_power", action),
                         ("logout",)]
    assert result.actions == ("bootdev:network", action)
    assert result.power_before == state


def test_ipmi_refusal_is_translated_and_the_session_closed(ipmi_bmc):
    cmd = ScriptedIpmi("off", fail="Invalid data field in request")
    with pytest.raises(BmcProtocolError) as info:
        power.network_boot(ipmi_bmc(cmd), CREDS, True, FAST)
    assert "Invalid data field" in str(info.value)
    assert cmd.calls == [("logout",)]
