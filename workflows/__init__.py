"""One module per long-lived process; `WORKFLOWS` is every workflow type the worker runs and
an auditor's replay knows."""

from __future__ import annotations

from collections.abc import Sequence

from workflows.ask import AskWorkflow
from workflows.budget import BudgetCycleWorkflow
from workflows.forum import ForumWorkflow
from workflows.project import ProjectWorkflow
from workflows.proposal import ProposalWorkflow

WORKFLOWS: Sequence[type] = (
    ProposalWorkflow,
    ForumWorkflow,
    AskWorkflow,
    BudgetCycleWorkflow,
    ProjectWorkflow,
)
