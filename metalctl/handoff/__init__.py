"""Stage 7 — hand hardened, audited KVM hosts to Nova as compute nodes.

nova-compute's configuration from the node's stored profile plan, the site's ``nova:``
section (passwords by reference) and the site PKI (:mod:`.novaconf`), validated against
Nova's own option definitions before anything is written (:mod:`.novaopts`); the audit
gate (:mod:`.gate`); the write through the harden engine's atomic apply and the service
start over one SSH session (:mod:`.apply`); registration and cell mapping
(:mod:`.register`); Placement's inventories verified against the plan (:mod:`.verify`),
through a small Nova/Placement client (:mod:`.nova_api`); the profile published to Nova
as a trait, an aggregate and flavors (:mod:`.publish`), and proven by a canary guest
(:mod:`.canary`). The stage entry points are
:func:`handoff` and :func:`disable` (:mod:`.stage`). See docs/handoff.md.
"""

from metalctl.errors import CloudError, CloudUnavailable
from metalctl.handoff.model import HandoffOptions, HandoffResult, HandoffStatus, Mismatch
from metalctl.handoff.novaconf import NovaConf, NovaSite, render, site_from_dict, stored_plan
from metalctl.handoff.novaopts import (
    NovaConfigError,
    NovaValidatorError,
    Validation,
    validate,
    validate_many,
)
from metalctl.handoff.site import CellMapping, HandoffSite
from metalctl.handoff.site import load as load_site
from metalctl.handoff.stage import disable, handoff, offered

#: Nova or Placement cannot be reached (CLI exit 4); a re-run converges
HandoffUnavailable = CloudUnavailable

__all__ = ["CellMapping", "CloudError", "HandoffOptions", "HandoffResult", "HandoffSite",
           "HandoffStatus", "HandoffUnavailable", "Mismatch", "NovaConf", "NovaConfigError",
           "NovaSite", "NovaValidatorError", "Validation", "disable", "handoff", "load_site",
           "offered", "render", "site_from_dict", "stored_plan", "validate", "validate_many"]
