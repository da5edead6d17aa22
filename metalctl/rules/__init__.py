"""The rules engine that harden and audit share (a foundation: it imports no stage).

:mod:`~metalctl.rules.catalogue` loads rules as data (``hardening/rules``), validated
frame and body; :mod:`~metalctl.rules.kinds` holds one unit per check kind (its body
schema, what it gathers, how it evaluates); :mod:`~metalctl.rules.gather` reads a host in
one round trip; :mod:`~metalctl.rules.engine` evaluates rules into a
:class:`~metalctl.rules.plan.RulePlan`; :mod:`~metalctl.rules.apply` turns a plan into
one atomic apply script; :mod:`~metalctl.rules.edit` edits config files.
"""
