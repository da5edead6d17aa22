"""The pipeline: every node of a rack through discover → enroll → profile → provision →
harden → audit → hand-off, per node and resumably. The only package that imports stages.

Library use::

    from metalctl import run
    from metalctl.store import Store

    rack = run.load_rack("inventory/rack.lab.yaml")
    inputs = run.StageInputs(credentials={"lab": lab_set}, verify=ca_bundle, ironic=client)
    with Store().open() as store:
        report = run.run(rack, run.RunOptions(inputs=inputs, until="profile"), store=store)
    print(report.counts())

Modules: :mod:`.rackfile` (the rack file and the profile match language),
:mod:`.scheduler` (per node, per stage, bounded, failure budget, resume),
:mod:`.adapters` (one adapter per stage), :mod:`.report` (JSON + HTML),
:mod:`.live` (the live table).
"""

from metalctl.run.adapters import StageInputs
from metalctl.run.api import RunOptions, run
from metalctl.run.rackfile import STAGES, FailureBudget, Rack
from metalctl.run.rackfile import load as load_rack
from metalctl.run.report import RunReport
from metalctl.run.scheduler import Adapter, NodeRun, RunEvent, StepResult

__all__ = ["STAGES", "Adapter", "FailureBudget", "NodeRun", "Rack", "RunEvent", "RunOptions",
           "RunReport", "StageInputs", "StepResult", "load_rack", "run"]
