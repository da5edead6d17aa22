"""What a node's BMC said, as plain data: the facts the BMC audit judges.

:mod:`metalctl.audit.bmc_read` fills them (the only I/O), :mod:`metalctl.audit.bmc_eval`
judges them (pure). The parts read from Redfish keep DSP0266's names and shapes
(ComputerSystem.v1 ``Manufacturer``/``BiosVersion``, Bios.v1 ``Attributes``, and the
``Attributes`` of the resource its ``@Redfish.Settings`` names), so :meth:`BmcFacts.to_dict`
of a real read and a fixture cut from a real payload are the same document
(tests/data/rule-cases/bmc.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from metalctl.model.bios import BiosState

#: the facts a rule's ``test`` reads (a key of ``errors``/``unread`` names one of them)
BIOS, UNAUTHENTICATED, WRONG_CREDENTIALS, TLS = ("bios", "unauthenticated",
                                                 "wrong_credentials", "tls")


@dataclass(frozen=True)
class Probe:
    """One request of the BMC and what it answered (the field the probe sets)."""

    http_status: int | None = None  # Redfish: the HTTP status of the GET
    verified: bool | None = None  # TLS: the certificate verified against the bundle
    refused: bool | None = None  # IPMI: the RMCP+ session was refused

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in (("http_status", self.http_status),
                                  ("verified", self.verified),
                                  ("refused", self.refused)) if v is not None}


@dataclass
class BmcFacts:
    """Everything the BMC audit knows about one node's BMC, read once.

    A fact that was not read is absent; ``errors`` says why reading it failed and
    ``unread`` why it was deliberately not read (no credentials). Absence is never
    evidence of compliance: the evaluation turns it into error, notchecked or
    notapplicable, never pass.
    """

    label: str  # the node as an operator names it (report host)
    source: str  # the BMC's URL (or address): every result's evidence source
    protocol: str | None  # redfish | ipmi (None: the store's record names none)
    scheme: str | None = None  # https | http (Redfish)
    #: ComputerSystem properties as discovery recorded them (``Manufacturer``,
    #: ``BiosVersion``): the store's record, not read again
    system: dict[str, Any] = field(default_factory=dict)
    #: from the store, not the BMC: the profile and the vendor BIOS attributes it wants
    #: (applied by the profile stage, else planned); None: nothing planned or applied
    intent_profile: str | None = None
    intent: dict[str, str] | None = None
    bios: BiosState | None = None  # current (Bios) and pending (its Settings) attributes
    probes: dict[str, Probe] = field(default_factory=dict)  # UNAUTHENTICATED, ...
    errors: dict[str, str] = field(default_factory=dict)  # fact -> why its read failed
    unread: dict[str, str] = field(default_factory=dict)  # fact -> why it was not read

    def to_dict(self) -> dict[str, Any]:
        """The facts as one JSON/YAML document (the fixture format)."""
        out: dict[str, Any] = {"label": self.label, "source": self.source,
                               "protocol": self.protocol, "scheme": self.scheme,
                               "system": dict(self.system)}
        if self.intent is not None:
            out["intent"] = {"profile": self.intent_profile,
                             "attributes": dict(self.intent)}
        if self.bios is not None:
            out["bios"] = {"Attributes": dict(self.bios.current)}
            out["bios_settings"] = {"Attributes": dict(self.bios.pending)}
        out["probes"] = {k: p.to_dict() for k, p in self.probes.items()}
        out["errors"], out["unread"] = dict(self.errors), dict(self.unread)
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BmcFacts:
        """Rebuild facts from :meth:`to_dict`'s document, or from Redfish payloads.

        ``bios`` and ``bios_settings`` may be whole Bios.v1 resources (a mockup's
        ``Bios`` and ``Bios/Settings``): only their ``Attributes`` are read. A Bios
        resource without ``Attributes`` is a Bios that lists none (empty), not an
        unread one. A pending value equal to the current one is not pending (some BMCs
        echo every attribute in Settings; :func:`metalctl.model.bios.diff` agrees).
        """
        intent = d.get("intent")
        bios = None
        if d.get("bios") is not None:
            current = dict(d["bios"].get("Attributes") or {})
            pending = dict((d.get("bios_settings") or {}).get("Attributes") or {})
            bios = BiosState(current=current,
                             pending={k: v for k, v in pending.items()
                                      if current.get(k) != v})
        return cls(label=str(d.get("label") or ""), source=str(d.get("source") or ""),
                   protocol=d.get("protocol"), scheme=d.get("scheme"),
                   system=dict(d.get("system") or {}),
                   intent_profile=(intent or {}).get("profile"),
                   intent=None if intent is None else dict(intent.get("attributes") or {}),
                   bios=bios,
                   probes={k: Probe(**p) for k, p in (d.get("probes") or {}).items()},
                   errors=dict(d.get("errors") or {}), unread=dict(d.get("unread") or {}))
