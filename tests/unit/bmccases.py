"""BMC rule cases: what a BMC said (:class:`metalctl.audit.bmc_facts.BmcFacts`, in its
``to_dict`` form) under which a BMC rule's claim holds or is false, judged by the pure
evaluation (:func:`metalctl.audit.bmc_eval.evaluate`) with no BMC.

``tests/data/rule-cases/bmc.yaml`` holds them in the format of :mod:`rulecases` (a rule
id -> a list of cases per side); a BMC case is::

    - name: what the BMC looks like (where it was seen)
      facts: {...}          # BmcFacts.to_dict fields over BASE
      site: {...}           # site policy (bmc.min_bios_version)
      expect: ...           # default: the side (pass, fail, error, notchecked, notapplicable)
      actual / detail / remediation / not_in_remediation: as in rulecases

A value in ``facts`` that is a mapping with one of these keys is a real Redfish payload,
read from its file, with the mapping's other keys over it:

- ``mockup: NAME/PATH``: DMTF's published mockups (tests/samples/dmtf, and the Bios
  resources of tests/data/bmc/dmtf, same commit of DMTF/Redfish-Publications)
- ``sample: NAME/PATH``: the vendor-shaped payloads of tests/samples/redfish
- ``recorded: FILE``: facts recorded from the lab's sushy-tools BMC (tests/data/bmc,
  kept true by tests/integration/test_audit_bmc.py); its keys go into ``facts``
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from metalctl.audit import bmc_eval
from metalctl.audit.bmc_facts import BmcFacts
from metalctl.audit.model import Result
from metalctl.rules.catalogue import Rule

TESTS = Path(__file__).resolve().parents[1]
DATA = TESTS / "data" / "bmc"
#: where ``mockup:``/``sample:`` payloads are looked for, in order
ROOTS = {"mockup": (TESTS / "samples" / "dmtf", DATA / "dmtf"),
         "sample": (TESTS / "samples" / "redfish",)}
BASE: dict[str, Any] = {"label": "r01-u12", "source": "https://192.0.2.20",
                        "protocol": "redfish", "scheme": "https"}


def payload(kind: str, ref: str) -> dict[str, Any]:
    """The Redfish document ``ref`` (``NAME/PATH`` below ``redfish/v1``) of a mockup."""
    name, _, path = ref.partition("/")
    for root in ROOTS[kind]:
        f = root / name / "redfish" / "v1" / path / "index.json"
        if f.is_file():
            return json.loads(f.read_text())
    raise FileNotFoundError(f"no {kind} {ref} under {[str(r) for r in ROOTS[kind]]}")


def resolve(value: Any) -> Any:
    """``value`` with every ``mockup:``/``sample:`` reference read, overrides over it."""
    if not isinstance(value, dict):
        return value
    for kind in ROOTS:
        if kind in value:
            over = {k: v for k, v in value.items() if k != kind}
            return {**payload(kind, value[kind]), **over}
    return {k: resolve(v) for k, v in value.items()}


def facts_of(case: dict[str, Any]) -> BmcFacts:
    """The facts of a case: BASE, then a recording, then the case's own facts."""
    doc = copy.deepcopy(BASE)
    given = copy.deepcopy(case.get("facts") or {})
    if "recorded" in given:
        doc.update(json.loads((DATA / given.pop("recorded")).read_text()))
    doc.update(resolve(given))
    return BmcFacts.from_dict(doc)


def judge(rule: Rule, case: dict[str, Any]) -> Result:
    """The audit result of the BMC ``rule`` on the case's facts."""
    [result] = bmc_eval.evaluate(facts_of(case), [rule], case.get("site") or {})
    return result
