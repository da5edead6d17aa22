"""metalctl: a rack of servers to hardened, performance-profiled KVM compute nodes.

The library is the product; the CLI (:mod:`metalctl.cli`) is a thin layer over it.
One package per stage, each with the same entry-point shape
(``stage(items, inputs, opts, *, store=None, on_result=None)``, see
``docs/architecture.md``)::

    from metalctl import discover, enroll, harden, audit
    from metalctl.netaddrs import parse_targets

    records = discover.discover(parse_targets(["10.1.0.0/24"]), creds, store=store)
    results = enroll.enroll(enroll.desired_from_records(records, {creds.name: creds}, opts),
                            ironic, opts, store=store)
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    # stages
    "discover",
    "enroll",
    "profile",
    "provision",
    "harden",
    "audit",
    "handoff",
    "run",
    # foundations a pipeline uses directly
    "credentials",
    "errors",
    "hosts",
    "ironic",
    "model",
    "netaddrs",
    "store",
]
