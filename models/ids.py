"""Workflow ids of every case kind: one place, so API, workflows and activities agree.

Workflow ids are stored in clear by Temporal: they hold case ids and years, never personal data.
"""

from __future__ import annotations


def proposal_workflow_id(proposal_id: str) -> str:
    return f"proposal-{proposal_id}"


def forum_workflow_id(forum_id: str) -> str:
    return f"forum-{forum_id}"


def ask_workflow_id(ask_id: str) -> str:
    return f"ask-{ask_id}"


def budget_cycle_workflow_id(year: int) -> str:
    """The cycle deliberated in `year` (and spent in year + 1)."""
    return f"budget-cycle-{year}"


def project_workflow_id(project_id: str) -> str:
    return f"project-{project_id}"
