"""Auditors: export any case's history, replay it against this code, recount a vote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any

from fastapi import APIRouter
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from api import proposal_service as service
from api.auth import CurrentPrincipal, Principal, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, not_found
from api.schemas import Recount, ReplayResult
from models.ballot_box import count_proposal_ballots
from models.case import Role
from worker import WORKFLOW_RUNNER
from workflows.registry import WORKFLOWS

router = APIRouter(prefix="/v1/audit", tags=["auditors"])

#: Every workflow type by the name its histories carry.
_BY_TYPE = {workflow._Definition.must_from_class(cls).name: cls for cls in WORKFLOWS}


def replayer(workflows: Sequence[type] = WORKFLOWS) -> Replayer:
    """A Replayer of `workflows` in the worker's own sandbox (`worker.WORKFLOW_RUNNER`: the
    same restrictions and passthrough modules, each class validated once per process)."""
    return Replayer(workflows=list(workflows), workflow_runner=WORKFLOW_RUNNER)


def _workflows_of(histories: Sequence[WorkflowHistory]) -> list[type]:
    """The workflow types these histories ran (a history replays its own type only: a child
    is a history of its own), or every type if one is not ours (so that the replay reports
    it unknown rather than this raising)."""
    names = {
        h.events[0].workflow_execution_started_event_attributes.workflow_type.name
        for h in histories
        if h.events
    }
    if not names or not names <= _BY_TYPE.keys():
        return list(WORKFLOWS)
    return [cls for name, cls in _BY_TYPE.items() if name in names]


async def replay_histories(histories: Iterable[WorkflowHistory]) -> dict[str, str]:
    """Replay `histories` against the current code in one `replay_workflows` call (one
    replay worker for all of them); returns the divergence of each that did not replay, by
    workflow id (empty: every history replayed)."""
    batch = list(histories)
    if not batch:
        return {}

    async def each() -> AsyncIterator[WorkflowHistory]:
        for history in batch:
            yield history

    results = await replayer(_workflows_of(batch)).replay_workflows(
        each(), raise_on_replay_failure=False
    )
    workflow_ids = {h.run_id: h.workflow_id for h in batch}
    return {
        workflow_ids.get(run_id, run_id): f"{type(failure).__name__}: {failure}"
        for run_id, failure in results.replay_failures.items()
    }


def _require_auditor(principal: Principal) -> None:
    require_role(principal, Role.AUDITOR, Role.ADMIN)


async def _history(ctx: AppContext, workflow_id: str) -> Any:
    try:
        return await ctx.temporal.get_workflow_handle(workflow_id).fetch_history()
    except RPCError as exc:
        if exc.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise not_found("case") from exc
        raise


@router.get("/cases/{workflow_id}/history")
async def case_history(workflow_id: str, ctx: Ctx, principal: CurrentPrincipal) -> dict[str, Any]:
    """The full event history in Temporal's own JSON format (loadable by any Temporal SDK)."""
    _require_auditor(principal)
    history = await _history(ctx, workflow_id)
    result: dict[str, Any] = history.to_json_dict()
    return result


@router.post("/cases/{workflow_id}/replay", response_model=ReplayResult)
async def replay_case(workflow_id: str, ctx: Ctx, principal: CurrentPrincipal) -> ReplayResult:
    """Re-execute the recorded history with the current workflow code; report any divergence."""
    _require_auditor(principal)
    history = await _history(ctx, workflow_id)
    divergence = (await replay_histories([history])).get(history.workflow_id)
    return ReplayResult(
        workflow_id=workflow_id,
        replayed=divergence is None,
        events=len(history.events),
        divergence=divergence,
    )


@router.get("/ballots/{ballot_id}/recount", response_model=Recount)
async def recount(ballot_id: str, session: Session, principal: CurrentPrincipal) -> Recount:
    """Count the ballot box of a proposal's vote again and compare with the recorded tally."""
    _require_auditor(principal)
    proposal = await service.load(session, ballot_id)
    if proposal.tallied_at is None:
        # Nobody, auditors and admins included, sees counts before the close (design.md, 7).
        raise Problem(409, f"the vote is not closed (the proposal is {proposal.status})")
    tally = await count_proposal_ballots(session, proposal.id)
    recorded = proposal.vote or {}
    matches = None
    if recorded.get("digest") is not None:
        matches = (
            recorded.get("yes") == tally.yes
            and recorded.get("no") == tally.no
            and recorded.get("turnout") == tally.turnout
            and recorded.get("digest") == tally.digest
        )
    return Recount(
        yes=tally.yes,
        no=tally.no,
        turnout=tally.turnout,
        digest=tally.digest,
        matches_recorded_tally=matches,
    )
