"""Attackers on the provisioning network, shared by the install tests.

A helper module: test modules import from here, never from each other.
"""

from __future__ import annotations

import http.client
import re
import threading

import requests


class Attacker(threading.Thread):
    """Someone on the provisioning network who knows the machine's MAC, on its host side
    (10.208.0.1, the root namespace's end of the veth), racing the real install: it asks
    for the MAC's boot script, tries the kickstart with the ticket it got, and posts its
    own host keys and ``end`` with whatever it holds, every half second."""

    def __init__(self, url: str, source: str, mac: str, keys: str) -> None:
        super().__init__(daemon=True)
        self.host, self.port = url.split("//")[1].split(":")
        self.source, self.mac, self.keys = source, mac.replace(":", "-"), keys
        self.stop = threading.Event()
        self.tickets: set[str] = set()
        self.answers: list[tuple[str, int]] = []

    def _ask(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=5,
                                          source_address=(self.source, 0))
        try:
            conn.request(method, path, body=body or None, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                _, script = self._ask("GET", f"/boot/{self.mac}.ipxe")
                m = re.search(rb"/ks/([\w.-]+)\?ticket=([\w-]+)", script)
                if not m:
                    continue
                node, ticket = m.group(1).decode(), m.group(2).decode()
                self.tickets.add(ticket)
                self.answers.append(("ks", self._ask("GET", f"/ks/{node}?ticket={ticket}")[0]))
                for stage, body in (("hostkeys", self.keys.encode()), ("end", b"")):
                    status, _ = self._ask("POST", f"/callback/{node}?stage={stage}", body,
                                          {"Authorization": f"Bearer {ticket}"})
                    self.answers.append((stage, status))
            except OSError:
                continue


class IronicRootAttacker(Attacker):
    """Reads Ironic's published ``ks.cfg`` (callback token in it) and posts its own host
    keys and ``end`` with that token from the host side, every half second."""

    def __init__(self, ks_url: str, boot_url: str, source: str, keys: str) -> None:
        super().__init__(boot_url, source, "00:00:00:00:00:00", keys)
        self.ks_url = ks_url
        self.tokens: set[str] = set()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                text = requests.get(self.ks_url, timeout=5).text
                m = re.search(r"Authorization: Bearer ([\w-]{43})", text)
                node = re.search(r"/callback/([\w.-]+)", text)
                if not (m and node):
                    continue
                self.tokens.add(m.group(1))
                for stage, body in (("hostkeys", self.keys.encode()), ("end", b"")):
                    status, _ = self._ask("POST", f"/callback/{node.group(1)}?stage={stage}",
                                          body, {"Authorization": f"Bearer {m.group(1)}"})
                    self.answers.append((stage, status))
            except (OSError, requests.RequestException):
                continue
