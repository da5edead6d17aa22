"""A Neutron **stand-in** for the lab: not Neutron, only the few read-only answers Nova
34 asks for a server without ports (``networks: none``).

Nova calls Neutron when it shows, lists or deletes any server (the server's ports, its
security groups) and refuses with 500 when no endpoint answers (LAB.md). This process
answers those listings with empty lists and everything else with 404, so a request for a
real network fails loudly instead of pretending. Why not the real ``neutron-server``:
docs/lab.md ("Glance and a Neutron stand-in").

Run: ``python -m metalctl_lab.neutron_standin ADDRESS PORT`` (the lab starts it).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

#: the collections Nova lists for a server without networks, answered empty
EMPTY = {"/v2.0/ports": "ports", "/v2.0/networks": "networks",
         "/v2.0/security-groups": "security_groups", "/v2.0/extensions": "extensions",
         "/v2.0/floatingips": "floatingips", "/v2.0/subnets": "subnets"}


def answer(method: str, path: str) -> tuple[int, dict]:
    """The stand-in's answer to one request (pure: what the handler sends)."""
    route = urlsplit(path).path.rstrip("/").removesuffix(".json")
    if method == "GET" and route in ("", "/"):
        return 200, {"versions": [{"id": "v2.0", "status": "CURRENT",
                                   "links": [{"rel": "self", "href": "/v2.0/"}]}]}
    if method == "GET" and route in EMPTY:
        return 200, {EMPTY[route]: []}
    return 404, {"NeutronError": {"type": "HTTPNotFound", "detail": "",
                                  "message": f"the lab's Neutron stand-in has no {route}"}}


class Handler(BaseHTTPRequestHandler):
    """Every method through :func:`answer`."""

    def _send(self) -> None:
        status, body = answer(self.command, self.path)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _send  # noqa: N815 - http.server's names

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base's name
        """One line per request on stderr (the lab's log file)."""
        sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")


def main(argv: list[str]) -> None:
    """Serve on ``argv[0]:argv[1]`` until killed."""
    ThreadingHTTPServer((argv[0], int(argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
