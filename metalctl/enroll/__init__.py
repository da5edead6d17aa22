"""Stage 2 — enroll discovered or imported nodes in Ironic, never twice.

Public API: :func:`desired_from_records` (discovery records to desired nodes),
:mod:`metalctl.enroll.inventory` (``baremetal create`` files and instackenv.json),
:func:`plan` (pure diff against Ironic), :func:`enroll` (apply and move through
manage/inspect/provide). Ironic is reached only through :mod:`metalctl.ironic`.
"""

from metalctl.enroll.reconcile import (
    Action,
    EnrollOptions,
    EnrollResult,
    NodePlan,
    apply_one,
    describe,
    desired_from_records,
    enroll,
    plan,
)

__all__ = ["Action", "EnrollOptions", "EnrollResult", "NodePlan", "apply_one", "describe",
           "desired_from_records", "enroll", "plan"]
