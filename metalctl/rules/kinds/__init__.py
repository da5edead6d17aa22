"""Check kinds: one unit per kind of check, the way ansible-lint keeps its rules.

A rule's ``check:`` names its kind; the kind declares, in one place:

* ``body``: the JSON Schema of the rest of the ``check:`` mapping (unknown keys are
  refused when the catalogue loads, so ``vaule:`` is an input error, not a run-time
  surprise);
* ``gather``: what it needs read from the host (files, units, read-only probes), added
  to the one-round-trip gather spec;
* ``evaluate``: how it judges the gathered facts (and, where safe, what it changes);
  ``None`` for kinds another component evaluates (``bmc``: the BMC audit);
* ``pki_sources``: which site-PKI files it installs (so harden reads the PKI only when
  a selected rule needs it).

The registry below is the only list of kinds; the modules register on import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from metalctl.rules.catalogue import Rule
from metalctl.rules.gather import GatherSpec
from metalctl.rules.plan import Check, CheckOutcome

#: a kind's judgement of one rule on one host (``Check`` bundles rule, body, facts, plan)
Evaluate = Callable[[Check], CheckOutcome]
Gather = Callable[[Rule, dict[str, Any], GatherSpec], None]


@dataclass(frozen=True)
class Kind:
    """One kind of check (see the module docstring)."""

    name: str
    body: dict[str, Any]
    required: tuple[str, ...] = ()
    evaluate: Evaluate | None = None
    gather: Gather | None = None
    #: alternatives of which exactly one must be given (e.g. sshd's allowed/max/min/forbid)
    one_of: tuple[str, ...] = ()
    pki_sources: Callable[[dict[str, Any]], list[str]] | None = None

    def schema(self) -> dict[str, Any]:
        """The full JSON Schema of a ``check:`` mapping of this kind."""
        out: dict[str, Any] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["kind", *self.required],
            "properties": {"kind": {"const": self.name}, **self.body},
        }
        if self.one_of:
            out["oneOf"] = [{"required": [k]} for k in self.one_of]
        return out


REGISTRY: dict[str, Kind] = {}


def register(
    name: str,
    *,
    body: dict[str, Any] | None = None,
    required: Sequence[str] = (),
    gather: Gather | None = None,
    one_of: Sequence[str] = (),
    pki_sources: Callable[[dict[str, Any]], list[str]] | None = None,
) -> Callable[[Evaluate], Evaluate]:
    """Register ``evaluate`` as the kind ``name`` (a decorator)."""

    def wrap(fn: Evaluate) -> Evaluate:
        REGISTRY[name] = Kind(
            name, body or {}, tuple(required), fn, gather, tuple(one_of), pki_sources
        )
        return fn

    return wrap


def declare(kind: Kind) -> None:
    """Register a kind that the rules engine does not evaluate itself."""
    REGISTRY[kind.name] = kind


def get(name: str) -> Kind:
    """The kind ``name`` (the catalogue has validated that it exists)."""
    return REGISTRY[name]


# string / list-of-strings schemas the kinds share
STR: dict[str, Any] = {"type": "string", "minLength": 1}
STRS: dict[str, Any] = {"type": "array", "items": STR}
SCALAR: dict[str, Any] = {"type": ["string", "integer", "boolean"]}
#: a ``{variable}`` of the rendering context (see ``Context.variables``)
TEMPLATE: dict[str, Any] = {"type": "string", "pattern": "^\\{[a-z_]+\\}$"}
MAPPING: dict[str, Any] = {"type": "object", "minProperties": 1, "additionalProperties": SCALAR}


#: the body of the kinds that set one ``key`` to ``value`` in a file
KEY_VALUE: dict[str, Any] = {"key": STR, "value": SCALAR}


def register_file_kind(
    name: str, *, body: dict[str, Any], required: Sequence[str]
) -> Callable[[Evaluate], Evaluate]:
    """Register a kind whose check edits one named ``file``: ``file`` joins its body and
    required keys, and the gather reads that file (a decorator, as :func:`register`)."""
    return register(name, body={"file": STR, **body}, required=("file", *required),
                    gather=gather_file)


def gather_file(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    """The kinds that edit one named file need its content."""
    if "{" not in c["file"]:
        spec.content.add(c["file"])
    else:  # a path that depends on the libvirt daemon flavour: both candidates
        from metalctl.rules.plan import expand

        spec.content.update(expand(c["file"]))


def gather_probe(rule: Rule, c: dict[str, Any], spec: GatherSpec) -> None:
    """A read-only probe under the rule's id; an inapplicable rule costs the host nothing."""
    import shlex

    probe = c["probe"]
    if rule.when.get("path_exists"):
        probe = f"[ -e {shlex.quote(rule.when['path_exists'])} ] && {{ {probe}; }}"
    spec.probes[rule.id] = probe


# the kinds register themselves on import
from metalctl.rules.kinds import (  # noqa: E402
    bmc,
    config,
    effective,
    files,
    firewall,
    kernel,
    libvirt,
    repositories,
    services,
    sshd,
)

__all__ = [
    "REGISTRY",
    "Kind",
    "bmc",
    "config",
    "declare",
    "effective",
    "files",
    "firewall",
    "get",
    "kernel",
    "libvirt",
    "register",
    "register_file_kind",
    "repositories",
    "services",
    "sshd",
]
