"""`WORKFLOWS`: every workflow type the worker runs and an auditor's replay knows.

Apart from the package's `__init__` so that a sandboxed run of one workflow (each workflow
task of a case not in the worker's cache, each replayed history) imports that workflow's
module only, not all of them."""

from __future__ import annotations

from collections.abc import Sequence

from workflows.ask import AskWorkflow
from workflows.budget import BudgetCycleWorkflow
from workflows.delivery import NotificationDelivery
from workflows.district_plan import DistrictPlanWorkflow
from workflows.forum import ForumWorkflow
from workflows.project import ProjectWorkflow
from workflows.proposal import ProposalWorkflow

WORKFLOWS: Sequence[type] = (
    ProposalWorkflow,
    ForumWorkflow,
    AskWorkflow,
    BudgetCycleWorkflow,
    ProjectWorkflow,
    DistrictPlanWorkflow,
    NotificationDelivery,
)
