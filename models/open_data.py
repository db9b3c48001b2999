"""The open-data export (issue 10): public datasets of the cases, their timelines, the tallies of
closed votes and the sortition draws, as flat rows of scalars; and the summary of a set of cases
that `GET /v1/me/activity` shows (the same columns as the `cases` dataset).

What no dataset holds, by construction (README.md, "Open data and my activity"):

- personal data: no person id of anyone (proposers, supporters, voters, authors, officials,
  the people drawn), no bodies, comments, posts or objections (free text citizens write at
  length); titles and timeline notes, which are public on the API already, are kept, with
  anything shaped like an e-mail address or a phone number masked (`scrub`);
- anything that joins a person to a choice: no ballot row, no receipt; votes are aggregates
  only (approvals per option per voter group), and only of boxes that are closed: a proposal
  is counted once its tally is recorded (`tallied_at`), a budget box once `closed_at` is set
  (the close and the count are one transaction), a forum or an ask once its counts are
  projected at its close (they are null before).

Every row is a dict of the dataset's columns, each value a `Cell`, so the JSON and the CSV of a
dataset carry the same values (the CSV spells None as an empty cell and booleans as
true/false). The large tables are read with a server-side cursor, a batch at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from models.ballot_box import count_box
from models.calendar import in_seoul

Cell = str | int | float | bool | None
Row = dict[str, Cell]
#: (year, kind) -> the digest the cycle's workflow recorded for that vote, or None if unknown.
RecordedDigest = Callable[[int, str], Awaitable[str | None]]

#: Rows fetched from the server-side cursor at a time.
BATCH = 500

MASK = "[removed]"
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
#: Phone numbers as Koreans write them: a leading 0 (010-1234-5678, 02 123 4567, 01012345678)
#: or a country code (+82 10-1234-5678). An amount or a year never starts with 0 or +.
_PHONE = re.compile(
    r"(?<!\w)(?<!\d\.)(?:\+\d{1,3}[\s.-]?\(?\d{1,4}\)?|\(?0\d{1,3}\)?)(?:[\s.-]?\d{3,4}){2}(?!\w|\.\d)"
)


def scrub(value: str | None) -> str | None:
    """`value` with e-mail addresses and phone numbers masked. A title or a note is public
    text, but a citizen may have typed a way to reach them into it; names cannot be told from
    other words, so they are not looked for (README.md, "Open data and my activity")."""
    if value is None:
        return None
    return _PHONE.sub(MASK, _EMAIL.sub(MASK, value))


def _same(value: str | None) -> str | None:
    return value


def seoul(moment: datetime | None) -> str | None:
    return None if moment is None else in_seoul(moment).isoformat()


def _iso_text(value: Any) -> str | None:
    """A time a projection stored as ISO text in JSON, shown in Seoul time; else None."""
    if not isinstance(value, str):
        return None
    try:
        return seoul(datetime.fromisoformat(value))
    except ValueError:
        return None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


async def _stream(
    connection: AsyncConnection, sql: str, params: dict[str, Any] | None = None
) -> AsyncIterator[Any]:
    """The rows of `sql`, read from a server-side cursor `BATCH` at a time."""
    result = await connection.stream(text(sql), params or {})
    async for partition in result.partitions(BATCH):
        for row in partition:
            yield row


# ---- cases ------------------------------------------------------------------------------------

CASE_KINDS = ("proposal", "forum", "ask", "budget_cycle", "budget_project", "district_plan")

CASE_COLUMNS = (
    "case_id",
    "kind",
    "title",
    "status",
    "department",
    "year",
    "field",
    "districts",
    "created_at",
    "opens_at",
    "closes_at",
    "updated_at",
    "amount_krw",
    "submitted_amount_krw",
    "support_count",
)

#: Per kind: the SELECT of its columns (no person column is ever selected), and where the
#: ids filter of `case_summaries` goes.
_CASE_SQL = {
    "proposal": (
        "SELECT id, title, status, department, category, created_at, updated_at, "
        "estimated_cost_krw, plan, vote, support_count FROM proposals"
    ),
    "forum": (
        "SELECT id, title, status, field, budget_year, created_at, opens_at, closes_at, "
        "updated_at FROM forums"
    ),
    "ask": (
        "SELECT id, title, status, department, created_at, opens_at, closes_at, updated_at "
        "FROM asks"
    ),
    "budget_cycle": "SELECT id, year, status, created_at, updated_at FROM budget_cycles",
    "budget_project": (
        "SELECT id, title, status, year, kind, field, districts, execution, created_at, "
        "updated_at, cost_krw, submitted_cost_krw FROM budget_projects"
    ),
    "district_plan": (
        "SELECT id, year, district, status, created_at, updated_at, cost_krw, "
        "submitted_cost_krw FROM district_plans"
    ),
}


def _case_row(kind: str, r: Any, *, scrubbed: bool = True) -> Row:
    """The `cases` row of `r`; `scrubbed`: with e-mail addresses and phone numbers masked in
    the title (the export; the caller's own view shows the title as the API does)."""
    title = scrub if scrubbed else _same
    row: Row = dict.fromkeys(CASE_COLUMNS)
    row.update(case_id=r.id, kind=kind, status=r.status, created_at=seoul(r.created_at))
    row["updated_at"] = seoul(r.updated_at)
    if kind == "proposal":
        plan = r.plan if isinstance(r.plan, dict) else {}
        vote = r.vote if isinstance(r.vote, dict) else {}
        row.update(
            title=title(r.title),
            department=r.department,
            field=r.category,
            opens_at=_iso_text(vote.get("opens_at")),
            closes_at=_iso_text(vote.get("closes_at")),
            amount_krw=_int(plan.get("cost_krw")),
            submitted_amount_krw=r.estimated_cost_krw,
            support_count=r.support_count,
        )
    elif kind == "forum":
        row.update(
            title=title(r.title),
            year=r.budget_year,
            field=r.field,
            opens_at=seoul(r.opens_at),
            closes_at=seoul(r.closes_at),
        )
    elif kind == "ask":
        row.update(
            title=title(r.title),
            department=r.department,
            opens_at=seoul(r.opens_at),
            closes_at=seoul(r.closes_at),
        )
    elif kind == "budget_cycle":
        row.update(title=f"{r.year} budget cycle", year=r.year)
    elif kind == "budget_project":
        execution = r.execution if isinstance(r.execution, dict) else {}
        department = execution.get("department")
        row.update(
            title=title(r.title),
            department=department if isinstance(department, str) else None,
            year=r.year,
            field=f"{r.kind}/{r.field}",
            districts=";".join(str(d) for d in r.districts or []),
            amount_krw=r.cost_krw,
            submitted_amount_krw=r.submitted_cost_krw,
        )
    else:  # district_plan
        row.update(
            title=f"{r.district} district plan {r.year}",
            year=r.year,
            districts=r.district,
            amount_krw=r.cost_krw,
            submitted_amount_krw=r.submitted_cost_krw,
        )
    return row


async def cases(connection: AsyncConnection) -> AsyncIterator[Row]:
    for kind in CASE_KINDS:
        async for r in _stream(connection, _CASE_SQL[kind] + " ORDER BY created_at, id"):
            yield _case_row(kind, r)


async def case_summaries(
    connection: AsyncConnection, ids_by_kind: dict[str, Sequence[str]], *, scrubbed: bool = True
) -> dict[str, Row]:
    """The `cases` rows of the given ids, by case id (ids of no such case are left out)."""
    found: dict[str, Row] = {}
    for kind, ids in ids_by_kind.items():
        if kind not in _CASE_SQL or not ids:
            continue
        result = await connection.execute(
            text(_CASE_SQL[kind] + " WHERE id = ANY(:ids)"), {"ids": list(ids)}
        )
        for r in result:
            found[r.id] = _case_row(kind, r, scrubbed=scrubbed)
    return found


# ---- timelines ----------------------------------------------------------------------------------

TIMELINE_COLUMNS = ("case_id", "seq", "at", "stage", "event", "actor_role", "note")

#: Only the timelines of the cases above: a row of any other case id is not exported.
_TIMELINES = (
    "SELECT case_id, seq, at, stage, event, actor_role, note FROM timeline_entries "
    "WHERE case_id IN ("
    + " UNION ALL ".join(
        f"SELECT id FROM {table}"
        for table in (
            "proposals",
            "forums",
            "asks",
            "budget_cycles",
            "budget_projects",
            "district_plans",
        )
    )
    + ") ORDER BY case_id, seq"
)


def timeline_row(r: Any, *, scrubbed: bool = True) -> Row:
    note = scrub(r.note) if scrubbed else r.note
    return {
        "case_id": r.case_id,
        "seq": r.seq,
        "at": seoul(r.at),
        "stage": r.stage,
        "event": r.event,
        "actor_role": r.actor_role,
        "note": note,
    }


async def timelines(connection: AsyncConnection) -> AsyncIterator[Row]:
    async for r in _stream(connection, _TIMELINES):
        yield timeline_row(r)


# ---- tallies of closed votes ----------------------------------------------------------------

PROPOSAL_VOTE_COLUMNS = (
    "proposal_id",
    "opens_at",
    "closes_at",
    "tallied_at",
    "quorum",
    "yes",
    "no",
    "turnout",
    "passed",
    "digest",
)


async def proposal_votes(connection: AsyncConnection) -> AsyncIterator[Row]:
    """The recorded tally of each proposal vote whose tally is recorded: `tallied_at` is set
    by the tally before any count is projected, and no ballot is taken after it."""
    sql = (
        "SELECT id, vote, tallied_at FROM proposals WHERE tallied_at IS NOT NULL "
        "AND vote IS NOT NULL AND vote->>'yes' IS NOT NULL ORDER BY tallied_at, id"
    )
    async for r in _stream(connection, sql):
        vote: dict[str, Any] = r.vote
        passed = vote.get("passed")
        digest = vote.get("digest")
        yield {
            "proposal_id": r.id,
            "opens_at": _iso_text(vote.get("opens_at")),
            "closes_at": _iso_text(vote.get("closes_at")),
            "tallied_at": seoul(r.tallied_at),
            "quorum": _int(vote.get("quorum")),
            "yes": _int(vote.get("yes")),
            "no": _int(vote.get("no")),
            "turnout": _int(vote.get("turnout")),
            "passed": passed if isinstance(passed, bool) else None,
            "digest": digest if isinstance(digest, str) else None,
        }


BUDGET_VOTE_COLUMNS = (
    "box_id",
    "year",
    "type",
    "project_id",
    "project_title",
    "field",
    "voter_group",
    "approvals",
    "group_ballots",
    "closed_at",
    "digest",
    "recorded_digest",
)


async def budget_votes(session: AsyncSession, recorded: RecordedDigest) -> AsyncIterator[Row]:
    """Each closed budget box recounted (`count_box`, the count the results endpoint makes),
    one row per project on the ballot per voter group: its approvals, the ballots of the
    group, the digest of the rows counted and the one the cycle recorded at the close."""
    boxes = (
        await session.execute(
            text(
                "SELECT id, case_id, options, groups, closed_at FROM ballot_boxes "
                "WHERE kind = 'budget' AND closed_at IS NOT NULL ORDER BY id"
            )
        )
    ).all()
    for box in boxes:
        _, year_text, kind = box.id.split(":", 2)
        year = int(year_text)
        tally = await count_box(session, box.id)
        digest = await recorded(year, kind)
        projects = {
            r.id: r
            for r in await session.execute(
                text("SELECT id, title, field FROM budget_projects WHERE id = ANY(:ids)"),
                {"ids": list(box.options)},
            )
        }
        for option in box.options:
            project = projects.get(option)
            for group in box.groups:
                yield {
                    "box_id": box.id,
                    "year": year,
                    "type": kind,
                    "project_id": option,
                    "project_title": scrub(project.title) if project else None,
                    "field": project.field if project else None,
                    "voter_group": group,
                    "approvals": tally.approvals.get(option, {}).get(group, 0),
                    "group_ballots": tally.ballots.get(group, 0),
                    "closed_at": seoul(box.closed_at),
                    "digest": tally.digest,
                    "recorded_digest": digest,
                }


OPINION_RESULT_COLUMNS = (
    "case_id",
    "kind",
    "closes_at",
    "participants",
    "for_count",
    "against_count",
    "other_count",
    "opinions",
    "digest",
)


async def opinion_results(connection: AsyncConnection) -> AsyncIterator[Row]:
    """The counts of each closed forum and ask: the workflow projects them at the close only
    (null before), with the digest of the participations counted."""
    for kind, table in (("forum", "forums"), ("ask", "asks")):
        sql = (
            "SELECT id, closes_at, participants, for_count, against_count, other_count, "
            f"opinions, digest FROM {table} WHERE digest IS NOT NULL ORDER BY closes_at, id"
        )
        async for r in _stream(connection, sql):
            yield {
                "case_id": r.id,
                "kind": kind,
                "closes_at": seoul(r.closes_at),
                "participants": r.participants,
                "for_count": r.for_count,
                "against_count": r.against_count,
                "other_count": r.other_count,
                "opinions": r.opinions,
                "digest": r.digest,
            }


# ---- sortition --------------------------------------------------------------------------------

DRAW_COLUMNS = (
    "draw_id",
    "purpose",
    "status",
    "size",
    "strata",
    "groups",
    "filter",
    "pool",
    "pool_size",
    "rulebook",
    "rulebook_hash",
    "reference_year",
    "population",
    "population_digest",
    "seed_commitment",
    "seed",
    "snapshot_digest",
    "members_count",
    "members_digest",
    "created_at",
    "revealed_at",
)

#: The frozen snapshot and the members (person ids) are never read out: only their sizes.
_DRAWS = (
    "SELECT id, purpose, status, size, strata, groups, filter, pool, "
    "jsonb_array_length(snapshot) AS pool_size, rulebook, rulebook_hash, reference_year, "
    "population, population_digest, seed_commitment, seed, snapshot_digest, "
    "CASE WHEN members IS NULL THEN NULL ELSE jsonb_array_length(members) END AS members_count, "
    "members_digest, created_at, revealed_at FROM sortition_draws ORDER BY created_at, id"
)


async def sortition_draws(connection: AsyncConnection) -> AsyncIterator[Row]:
    async for r in _stream(connection, _DRAWS):
        revealed = r.status == "revealed"
        yield {
            "draw_id": r.id,
            "purpose": r.purpose,
            "status": r.status,
            "size": r.size,
            "strata": ";".join(str(s) for s in r.strata),
            "groups": r.groups,
            "filter": json.dumps(r.filter, sort_keys=True, ensure_ascii=False),
            "pool": r.pool,
            "pool_size": r.pool_size,
            "rulebook": r.rulebook,
            "rulebook_hash": r.rulebook_hash,
            "reference_year": r.reference_year,
            "population": r.population,
            "population_digest": r.population_digest,
            "seed_commitment": r.seed_commitment,
            # the seed is set at the reveal; never shown before it
            "seed": r.seed if revealed else None,
            "snapshot_digest": r.snapshot_digest,
            "members_count": r.members_count if revealed else None,
            "members_digest": r.members_digest if revealed else None,
            "created_at": seoul(r.created_at),
            "revealed_at": seoul(r.revealed_at),
        }


STRATUM_COLUMNS = ("draw_id", "stratum", "population", "available", "quota", "drawn")


def _stratum(value: Any) -> str:
    if not isinstance(value, dict):
        return str(value)
    return ";".join(f"{key}={value[key]}" for key in value)


async def sortition_strata(connection: AsyncConnection) -> AsyncIterator[Row]:
    """Each draw's counts per stratum (`drawn` is null until the reveal, as recorded)."""
    sql = "SELECT id, status, counts FROM sortition_draws ORDER BY created_at, id"
    async for r in _stream(connection, sql):
        for count in r.counts:
            yield {
                "draw_id": r.id,
                "stratum": _stratum(count.get("stratum")),
                "population": _int(count.get("population")),
                "available": _int(count.get("available")),
                "quota": _int(count.get("quota")),
                "drawn": _int(count.get("drawn")) if r.status == "revealed" else None,
            }


# ---- the catalogue ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    name: str
    description: str
    columns: tuple[str, ...]


DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            "cases",
            "Every case: proposals, forums, asks, budget cycles, budget projects and district "
            "plans, with kind, title, status, department, year, field (a proposal's category; "
            "a budget project's type/field), districts, dates and amounts in KRW. No proposer "
            "or author is named.",
            CASE_COLUMNS,
        ),
        Dataset(
            "timelines",
            "Every transition of every case, oldest first per case: case id, seq, time, "
            "stage, event, the role of the actor (never the person) and the note.",
            TIMELINE_COLUMNS,
        ),
        Dataset(
            "proposal_votes",
            "The recorded tally of each proposal vote that has closed: yes, no, turnout, "
            "quorum, passed and the digest of the ballots counted. A vote still open has no "
            "row.",
            PROPOSAL_VOTE_COLUMNS,
        ),
        Dataset(
            "budget_votes",
            "Each closed budget ballot box recounted: approvals per project per voter group, "
            "the ballots of the group, the digest of the rows counted and the digest the "
            "cycle recorded at the close. A box not closed has no row; no ballot is listed.",
            BUDGET_VOTE_COLUMNS,
        ),
        Dataset(
            "opinion_results",
            "The counts of each closed forum and 'Seoul asks' case: participants, for, "
            "against, other, opinions, and their digest. An open one has no row.",
            OPINION_RESULT_COLUMNS,
        ),
        Dataset(
            "sortition_draws",
            "Every sortition draw: purpose, size, strata, pool and its size, rulebook, "
            "population digest, seed commitment, the seed and the members' count and digest "
            "after the reveal. Never who was drawn.",
            DRAW_COLUMNS,
        ),
        Dataset(
            "sortition_strata",
            "Each draw's counts per stratum: population, available in the pool, quota, and "
            "drawn (after the reveal).",
            STRATUM_COLUMNS,
        ),
    )
}
