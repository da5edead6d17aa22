"""metalctl: a rack of servers to hardened, performance-profiled KVM compute nodes.

The library is the product; the CLI (:mod:`metalctl.cli`) is a thin layer over it.
Stage entry points::

    from metalctl import discover, enroll
    records = discover.discover(parse_targets(["10.1.0.0/24"]), creds)
    results = enroll.enroll(Ironic(IronicConfig(url=...)).connect(),
                            enroll.desired_from_records(records, {creds.name: creds}, opts))
"""

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "credentials",
    "discover",
    "enroll",
    "errors",
    "inventory",
    "ironic",
    "lab",
    "netaddrs",
    "store",
]
