"""Linux CPU list syntax (``0-3,8,10-11``), as used by isolcpus, tuned and Nova."""

from __future__ import annotations

from collections.abc import Iterable


def parse(text: str) -> set[int]:
    """Parse a CPU list; raises ValueError naming the bad element."""
    cpus: set[int] = set()
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"not a CPU list element: {part!r}")
        start, end = int(lo), int(hi) if sep else int(lo)
        if end < start:
            raise ValueError(f"descending CPU range: {part!r}")
        cpus.update(range(start, end + 1))
    return cpus


def format(cpus: Iterable[int]) -> str:  # noqa: A001 - mirrors the kernel's name
    """Shortest canonical form: sorted, consecutive runs collapsed."""
    ids = sorted(set(cpus))
    runs: list[str] = []
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        runs.append(str(ids[i]) if i == j else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(runs)
