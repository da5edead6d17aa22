"""Stage 3 — performance profiles: BIOS settings and NUMA / CPU isolation / SR-IOV /
hugepage plans derived per node from its real topology.

Modules: :mod:`~metalctl.profile.library` (profiles as validated YAML with
``extends``), :mod:`~metalctl.profile.facts` (topology from in-band collection, Ironic
inspection or the BMC record), :mod:`~metalctl.profile.derive` (profile + topology ->
plan), :mod:`~metalctl.profile.bios` (vendor attribute maps), and
:mod:`~metalctl.profile.stage` (the stage API over the store).
"""
