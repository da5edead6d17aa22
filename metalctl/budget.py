"""Time and retry budgets, passed explicitly to each stage.

``0`` means zero (no retry) and ``None`` means "use the default"; nothing here
reads the environment. Defaults follow what field data says about BMCs: connect
fast so dead addresses cost little (DMTF Redfishtool uses 3 s), read long enough
for a slow but healthy BMC, retry only transient transport errors.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """Bounds for talking to one peer.

    Attributes:
        connect_timeout_s: TCP connect / first IPMI answer.
        read_timeout_s: one HTTP response or IPMI command.
        attempts: tries of an idempotent read (1 = no retry).
        backoff_s: pause between attempts.
        deadline_s: wall-clock cap for all work on one peer (one address, one node).
        concurrency: peers worked on at once.
    """

    connect_timeout_s: float = 3.0
    read_timeout_s: float = 20.0
    attempts: int = 2
    backoff_s: float = 0.5
    deadline_s: float = 120.0
    concurrency: int = 64


DISCOVERY = Budget()
#: Ironic recommends batching enrollment with about 50 parallel processes (refarch/common.rst)
ENROLLMENT = Budget(connect_timeout_s=5.0, read_timeout_s=60.0, attempts=3, backoff_s=1.0,
                    deadline_s=600.0, concurrency=32)
