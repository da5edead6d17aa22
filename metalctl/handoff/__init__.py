"""Stage 7 — hand hardened, audited KVM hosts to Nova as compute nodes (partly built).

Built: nova-compute's configuration from the node's stored profile plan, the site's
``nova:`` section (passwords by reference) and the site PKI (:mod:`.novaconf`),
validated against Nova's own option definitions before anything is written
(:mod:`.novaopts`, which runs ``validate_nova_conf.py`` with an interpreter that has
nova). To come (issue "Hand-off to Nova"): the audit gate, applying through the harden
engine, starting nova-compute and mapping it into its cell, verification from Nova's and
Placement's APIs, and ``--disable``. See docs/handoff.md.
"""

from metalctl.handoff.novaconf import NovaConf, NovaSite, render, site_from_dict, stored_plan
from metalctl.handoff.novaopts import (
    NovaConfigError,
    NovaValidatorError,
    Validation,
    validate,
    validate_many,
)

__all__ = ["NovaConf", "NovaConfigError", "NovaSite", "NovaValidatorError", "Validation",
           "render", "site_from_dict", "stored_plan", "validate", "validate_many"]
