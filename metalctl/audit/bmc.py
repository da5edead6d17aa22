"""BMC-side audit: BIOS drift against the node's profile, firmware minimum, authentication
and TLS of the Redfish service. Read-only; every node of the store with a BMC record.

Two steps: :func:`metalctl.audit.bmc_read.read` asks the BMC (the only I/O) and
:func:`metalctl.audit.bmc_eval.evaluate` judges what it said (pure), so every rule is
proven both ways on recorded facts (tests/data/rule-cases/bmc.yaml) as well as on the
lab's BMCs (tests/integration/test_audit_bmc.py).
"""

from __future__ import annotations

import time
from typing import Any

from metalctl.audit.bmc_eval import evaluate
from metalctl.audit.bmc_read import read
from metalctl.audit.model import HostAudit
from metalctl.budget import Budget
from metalctl.credentials import CredentialSet
from metalctl.rules.catalogue import Rule
from metalctl.store import Store


def check_node(store: Store, node: dict[str, Any], rules: list[Rule],
               creds: CredentialSet | None, verify: bool | str, site: dict[str, Any],
               budget: Budget) -> HostAudit:
    """Run the BMC rules against one node of the store (read-only)."""
    started = time.monotonic()
    facts = read(store, node, rules, creds, verify, budget)
    return HostAudit(facts.label, kind="bmc", results=evaluate(facts, rules, site),
                     duration_s=round(time.monotonic() - started, 3))
