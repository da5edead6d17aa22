"""The stage contract's result: what every stage reports per item.

``run`` (its scheduler and report), the CLI's renderers and a library caller read these
four fields the same way whatever the stage; each stage's own result type adds what is
particular to it (an enrollment's Ironic uuid, an install's timings) and satisfies this
protocol (``tests/unit/test_stage_contract.py``).

* ``key``: the node's key in the store (a host given without a store: its name).
* ``ok``: the item got through the stage (an item the stage had nothing to do for counts).
* ``reason``: why not, one line a tech can act on; or a note on a success.
* ``evidence``: what the stage found or did, JSON-serialisable, no secret.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class StageResult(Protocol):
    @property
    def key(self) -> str: ...

    @property
    def ok(self) -> bool: ...

    @property
    def reason(self) -> str | None: ...

    @property
    def evidence(self) -> dict[str, Any]: ...


class HostResultMixin:
    """The contract for a per-host result (harden, hand-off) with ``host``, ``key``,
    ``status`` (whose ``ok`` says it got through) and ``error``; without a store the
    host's name is its key."""

    host: str
    key: str
    status: Any
    error: str | None

    def __post_init__(self) -> None:
        self.key = self.key or self.host

    @property
    def ok(self) -> bool:
        return bool(self.status.ok)

    @property
    def reason(self) -> str | None:
        return self.error
