"""The ``bmc`` kind: checks of a node's BMC (Redfish/IPMI), evaluated by the BMC audit
(:mod:`metalctl.audit.bmc`), not on a host; declared here so its body is validated with
every other rule's."""

from __future__ import annotations

from metalctl.rules.kinds import Kind, declare

#: what the BMC audit knows how to test
TESTS = ("bios_drift", "bios_version", "unauthenticated", "wrong_credentials", "tls")

declare(Kind("bmc", body={"test": {"enum": list(TESTS)}}, required=("test",)))
