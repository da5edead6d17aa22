"""Stage 1 — discover BMCs over address ranges and read their hardware inventory.

Public API: :func:`discover` with :class:`DiscoverOptions`; records are
:class:`metalctl.model.node.DiscoveryRecord`. BMC protocols are reached only through
:mod:`metalctl.bmc` (the boundary to sushy and pyghmi).
"""

from metalctl.discover.scan import (
    DiscoverOptions,
    Probe,
    discover,
    probe_address,
    scrubbed,
    status_of,
)

__all__ = ["DiscoverOptions", "Probe", "discover", "probe_address", "scrubbed", "status_of"]
