"""`GET /v1/me/activity` (issue 10): the caller's own cases, each with the caller's relation to
it, its current status and its whole timeline.

The relations come from the rows that name the caller: proposals made, supports, comments,
votes taken part in (`ballot_participations`: that the caller voted, never what: no
`ballot_choices` row is read here), forum and ask participations, budget projects proposed,
objections filed, opinions given in the Budget Square, whole-budget participation records
and answers, membership of a budget body; for officials, the cases they opened (asks, forums,
budget cycles) or submitted (district plans). Only the caller's own: an official sees the cases
of their department in `GET /v1/inbox`, not here (README.md, "Open data and my activity").
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import text

from api.auth import CurrentPrincipal
from api.context import Ctx
from api.schemas import MyProposal, TimelineItem
from models import open_data

router = APIRouter(prefix="/v1/me", tags=["citizens"])

#: The most timeline entries shown for one case; the case's own timeline endpoint has them all.
MAX_TIMELINE = 500

#: (case id, kind, relation) of every case a row names the caller in. A participation is a
#: forum's or an ask's (their ids never collide: both are ids of `models.ids`).
_RELATIONS = text(
    """
    SELECT id AS case_id, 'proposal' AS kind, 'proposer' AS relation
      FROM proposals WHERE proposer_id = :me
    UNION SELECT proposal_id, 'proposal', 'supporter' FROM supports WHERE person_id = :me
    UNION SELECT proposal_id, 'proposal', 'commenter' FROM comments WHERE author_id = :me
    UNION SELECT b.case_id, CASE WHEN b.kind = 'proposal' THEN 'proposal' ELSE 'budget_cycle' END,
                 'voter'
      FROM ballot_participations p JOIN ballot_boxes b ON b.id = p.box_id
     WHERE p.person_id = :me
    UNION SELECT p.case_id, CASE WHEN f.id IS NULL THEN 'ask' ELSE 'forum' END, 'participant'
      FROM participations p LEFT JOIN forums f ON f.id = p.case_id WHERE p.person_id = :me
    UNION SELECT id, 'budget_project', 'proposer' FROM budget_projects WHERE proposer_id = :me
    UNION SELECT project_id, 'budget_project', 'objector'
      FROM project_objections WHERE author_id = :me
    UNION SELECT project_id, 'budget_project', 'opinion_author'
      FROM project_opinions WHERE author_id = :me
    UNION SELECT c.id, 'budget_cycle', 'participant'
      FROM budget_participation r JOIN budget_cycles c ON c.year = r.year
     WHERE r.author_id = :me
    UNION SELECT c.id, 'budget_cycle', 'answerer'
      FROM budget_participation_answers a
      JOIN budget_participation r ON r.id = a.record_id
      JOIN budget_cycles c ON c.year = r.year
     WHERE a.author_id = :me
    UNION SELECT c.id, 'budget_cycle', 'body_member'
      FROM budget_body_members m JOIN budget_cycles c ON c.year = m.year
     WHERE m.person_id = :me
    UNION SELECT id, 'forum', 'creator' FROM forums WHERE created_by = :me
    UNION SELECT id, 'ask', 'creator' FROM asks WHERE created_by = :me
    UNION SELECT id, 'budget_cycle', 'creator' FROM budget_cycles WHERE created_by = :me
    UNION SELECT id, 'district_plan', 'submitter' FROM district_plans WHERE submitted_by = :me
    """
)

_TIMELINES = text(
    "SELECT case_id, seq, at, stage, event, actor_role, note FROM timeline_entries "
    "WHERE case_id = ANY(:ids) ORDER BY case_id, seq"
)


class MyCase(BaseModel):
    id: str
    kind: str
    title: str | None
    #: The caller's relations to the case, sorted: proposer, supporter, voter, participant, ...
    relations: list[str]
    status: str
    department: str | None
    #: Seoul time, as every time of the API.
    created_at: str | None
    timeline: list[TimelineItem]
    #: True when the case has more than `MAX_TIMELINE` entries (the oldest are shown).
    timeline_truncated: bool


class MyActivityOut(BaseModel):
    """A page of the caller's cases, newest first, and (for clients of api.md's first
    version) the lists of proposals made, supported and voted on, complete on every page."""

    items: list[MyCase]
    next_cursor: str | None
    proposals: list[MyProposal]
    supported: list[MyProposal]
    voted: list[MyProposal]


@router.get(
    "/activity",
    response_model=MyActivityOut,
    description=(
        "The caller's own cases (any authenticated citizen or official), newest first: "
        "`items` holds each case's id, kind, title, the caller's `relations` to it (proposer, "
        "supporter, commenter, voter, participant, objector, opinion_author, answerer, "
        "body_member, creator, submitter), its status and its timeline (at most "
        f"{MAX_TIMELINE} entries, oldest first; `timeline_truncated` says when there are "
        "more). A vote shows only that the caller voted, never the choice. Paginated: "
        "`?limit=` cases per page (1-100, default 20) and `?cursor=` the `next_cursor` of "
        "the previous page. `proposals`, `supported` and `voted` list the proposals the "
        "caller made, supported and voted on (all of them, on every page). An official sees "
        "only the cases they opened or answered here, not their department's: those are in "
        "`GET /v1/inbox`."
    ),
)
async def my_activity_with_timelines(
    ctx: Ctx,
    principal: CurrentPrincipal,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,9}$")] = None,
) -> MyActivityOut:
    offset = int(cursor or 0)
    async with ctx.engine.connect() as connection:
        relations: dict[str, set[str]] = defaultdict(set)
        ids_by_kind: dict[str, set[str]] = defaultdict(set)
        for r in await connection.execute(_RELATIONS, {"me": principal.sub}):
            relations[r.case_id].add(r.relation)
            ids_by_kind[r.kind].add(r.case_id)
        summaries = await open_data.case_summaries(
            connection,
            {kind: sorted(ids) for kind, ids in ids_by_kind.items()},
            scrubbed=False,
        )
        ordered = sorted(
            summaries.values(),
            key=lambda s: (str(s["created_at"] or ""), str(s["case_id"])),
            reverse=True,
        )
        page = ordered[offset : offset + limit]
        entries: dict[str, list[TimelineItem]] = defaultdict(list)
        if page:
            ids = [str(s["case_id"]) for s in page]
            for r in await connection.execute(_TIMELINES, {"ids": ids}):
                entries[r.case_id].append(TimelineItem.model_validate(r, from_attributes=True))

    def proposals(relation: str) -> list[MyProposal]:
        mine = [s for s in summaries.values() if relation in relations[str(s["case_id"])]]
        mine.sort(key=lambda s: (str(s["created_at"] or ""), str(s["case_id"])))
        return [
            MyProposal(id=str(s["case_id"]), title=str(s["title"]), status=str(s["status"]))
            for s in mine
            if s["kind"] == "proposal"
        ]

    items = []
    for s in page:
        case_id = str(s["case_id"])
        timeline = entries[case_id]
        items.append(
            MyCase(
                id=case_id,
                kind=str(s["kind"]),
                title=None if s["title"] is None else str(s["title"]),
                relations=sorted(relations[case_id]),
                status=str(s["status"]),
                department=None if s["department"] is None else str(s["department"]),
                created_at=None if s["created_at"] is None else str(s["created_at"]),
                timeline=timeline[:MAX_TIMELINE],
                timeline_truncated=len(timeline) > MAX_TIMELINE,
            )
        )
    more = offset + limit < len(ordered)
    return MyActivityOut(
        items=items,
        next_cursor=str(offset + limit) if more else None,
        proposals=proposals("proposer"),
        supported=proposals("supporter"),
        voted=proposals("voter"),
    )
