"""Citizens (and anyone, for reading): propose, support, comment, withdraw, vote, my page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse

from api import proposal_service as service
from api.auth import CurrentPrincipal, require_eligible, require_role
from api.context import AppContext, Ctx, Session
from api.errors import Problem, ballot_problem
from api.idempotency import IdempotencyKey, run_once
from api.schemas import (
    AgendaOut,
    BallotReceipt,
    BallotRequest,
    CommentCreate,
    CommentOut,
    Page,
    ProposalCreate,
    ProposalOut,
    SupportOut,
    Timeline,
)
from models.ballot_box import BallotRefused, cast_proposal_ballot
from models.case import Role
from models.proposal import Status, Withdrawal
from workflows.proposal import ProposalWorkflow

router = APIRouter(prefix="/v1", tags=["citizens"])

StatusFilter = Annotated[Status | None, Query()]
Limit = Annotated[int, Query(ge=1, le=200)]


@router.post("/proposals", status_code=201, response_model=ProposalOut)
async def submit_proposal(
    body: ProposalCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_eligible(principal)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        "POST /v1/proposals",
        body,
        lambda unit: service.create(unit, principal, body),
    )


@router.get("/proposals", response_model=Page[ProposalOut])
async def list_proposals(
    session: Session,
    status: StatusFilter = None,
    department: str | None = None,
    limit: Limit = 50,
    cursor: str | None = None,
) -> Page[ProposalOut]:
    return await service.list_proposals(
        session,
        status=status.value if status else None,
        department=department,
        limit=limit,
        cursor=cursor,
    )


@router.get("/proposals/{proposal_id}", response_model=ProposalOut)
async def get_proposal(proposal_id: str, session: Session) -> ProposalOut:
    return service.to_out(await service.load(session, proposal_id))


@router.get("/proposals/{proposal_id}/timeline", response_model=Timeline)
async def get_timeline(proposal_id: str, session: Session) -> Timeline:
    await service.load(session, proposal_id)
    return await service.timeline(session, proposal_id)


@router.get("/proposals/{proposal_id}/agenda", response_model=AgendaOut)
async def get_agenda(proposal_id: str, session: Session) -> AgendaOut:
    return service.agenda_out(await service.load(session, proposal_id))


@router.post("/proposals/{proposal_id}/supports", status_code=201, response_model=SupportOut)
async def support_proposal(
    proposal_id: str, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> JSONResponse:
    require_eligible(principal)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST supports {proposal_id}",
        {},
        lambda unit: service.support(unit, principal, proposal_id),
    )


@router.post("/proposals/{proposal_id}/comments", status_code=201, response_model=CommentOut)
async def comment_on_proposal(
    proposal_id: str,
    body: CommentCreate,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_role(principal, Role.CITIZEN)
    return await run_once(
        ctx,
        principal,
        idempotency_key,
        f"POST comments {proposal_id}",
        body,
        lambda unit: service.comment(unit, principal, proposal_id, body.body),
    )


@router.post("/proposals/{proposal_id}/withdraw", response_model=ProposalOut)
async def withdraw_proposal(
    proposal_id: str, ctx: Ctx, principal: CurrentPrincipal, idempotency_key: IdempotencyKey = None
) -> ProposalOut:
    async with ctx.sessions() as session:
        row = await service.load(session, proposal_id)
    if row.proposer_id != principal.sub:
        raise Problem(403, "only the proposer may withdraw a proposal")
    if row.status == Status.FORUM.value:
        raise Problem(
            409,
            "a public forum has been decided for this proposal: the proposer's withdrawal no "
            "longer stops it (process.md §4)",
        )
    return await service.decide(
        ctx,
        proposal_id,
        ProposalWorkflow.withdraw,
        Withdrawal(actor=principal.actor()),
        request_id=service.update_id("withdraw", principal, idempotency_key),
    )


@router.post("/proposals/{proposal_id}/ballots", status_code=201, response_model=BallotReceipt)
async def vote(
    proposal_id: str,
    body: BallotRequest,
    ctx: Ctx,
    principal: CurrentPrincipal,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    require_eligible(principal)

    async def cast(unit: AppContext) -> BallotReceipt:
        try:
            async with unit.statement_session() as session:
                receipt = await cast_proposal_ballot(
                    session,
                    proposal_id=proposal_id,
                    person_id=principal.sub,
                    choice=body.choice,
                    now=await unit.clock.now(),
                )
        except BallotRefused as refused:
            raise ballot_problem(refused) from refused
        return BallotReceipt(receipt=receipt)

    return await run_once(
        ctx, principal, idempotency_key, f"POST ballots {proposal_id}", body, cast, secret=True
    )
