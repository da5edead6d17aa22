"""Process exit codes: what a script calling metalctl can rely on."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every metalctl verb (also listed in ``--help`` and the README)."""

    OK = 0
    #: at least one node/host/address failed; the others were processed
    FAILED = 1
    #: findings: audit results at or above ``--fail-on``, BIOS drift (``profile diff``),
    #: a live host that differs from its plan (``profile verify``)
    FINDINGS = 2
    #: invalid input (file, field, range, MAC, credentials); nothing was changed
    INVALID_INPUT = 3
    #: a peer everything depends on (Ironic, the lab) is unavailable
    PEER_UNAVAILABLE = 4
    INTERRUPTED = 130


EPILOG = (
    "exit codes: 0 ok; 1 some node/address failed; 2 findings (audit at/above --fail-on, "
    "BIOS drift, plan mismatch); "
    "3 invalid input (nothing changed); 4 peer unavailable (e.g. Ironic); 130 interrupted"
)
