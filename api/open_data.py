"""Open data (issue 10): public exports of the cases, their timelines, the tallies of closed
votes and the sortition draws, in JSON and CSV, without authentication.

The datasets and what they leave out are in models/open_data.py; README.md, "Open data and my
activity", says why. A dataset is streamed: rows are read from a server-side cursor and sent a
batch at a time, never all in memory. The first batch is read before the response starts, so a
database that is down is still a problem+json 503, not a broken 200.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import WorkflowQueryFailedError, WorkflowQueryRejectedError
from temporalio.service import RPCError

from api.context import AppContext, Ctx
from api.errors import Problem
from models import open_data
from models.ids import budget_cycle_workflow_id
from workflows.budget import BudgetCycleWorkflow

router = APIRouter(prefix="/v1/open-data", tags=["open data"])

Format = Literal["json", "csv"]
FORMATS: tuple[Format, ...] = ("json", "csv")
MEDIA_TYPES: dict[Format, str] = {"json": "application/json", "csv": "text/csv; charset=utf-8"}
#: A CSV text cell starting with one of these is prefixed with `'`, so that a spreadsheet shows
#: it rather than running it as a formula (titles and notes are written by people).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: How long the recorded digest of a budget vote is waited for from the cycle's workflow.
QUERY_TIMEOUT = timedelta(seconds=5)

POLICY = (
    "No personal data: no person id of anyone (proposers, supporters, voters, authors, "
    "officials, people drawn), no names, e-mail addresses or phone numbers (those typed into a "
    "title or a timeline note are masked as [removed]), no bodies, comments, posts or "
    "objections. Votes are aggregates of closed boxes only: no ballot, no receipt, and no count "
    "of a vote still open."
)


class DatasetOut(BaseModel):
    name: str
    description: str
    columns: list[str]
    json_url: str
    csv_url: str


class OpenDataIndex(BaseModel):
    policy: str
    formats: list[str]
    datasets: list[DatasetOut]


@router.get(
    "",
    response_model=OpenDataIndex,
    description=(
        "The open datasets, each with its description, its columns and its URLs in JSON and "
        "CSV. No token needed."
    ),
)
async def open_data_index(request: Request) -> OpenDataIndex:
    def url(name: str) -> str:
        return str(request.url_for("open_data_export", dataset=name))

    return OpenDataIndex(
        policy=POLICY,
        formats=list(FORMATS),
        datasets=[
            DatasetOut(
                name=d.name,
                description=d.description,
                columns=list(d.columns),
                json_url=url(f"{d.name}.json"),
                csv_url=url(f"{d.name}.csv"),
            )
            for d in open_data.DATASETS.values()
        ],
    )


def _choose(dataset: str, format_: str | None) -> tuple[open_data.Dataset, Format]:
    """The dataset and format a request names: `{name}.json`, `{name}.csv`, or `{name}` with
    `?format=` (JSON when neither says)."""
    name, dot, suffix = dataset.rpartition(".")
    if not dot:
        name, suffix = dataset, ""
    known = ", ".join(open_data.DATASETS)
    found = open_data.DATASETS.get(name)
    if found is None:
        raise Problem(
            404, f"dataset: no dataset {dataset!r}; the datasets are {known}", field="path.dataset"
        )
    if suffix and suffix not in FORMATS:
        raise Problem(
            422, f"dataset: .{suffix} is no format; use .json or .csv", field="path.dataset"
        )
    if format_ is not None and format_ not in FORMATS:
        raise Problem(422, "format: json or csv", field="query.format")
    if suffix and format_ is not None and suffix != format_:
        raise Problem(
            422, f"format: {format_} contradicts the path's .{suffix}", field="query.format"
        )
    chosen = suffix or format_ or "json"
    return found, "csv" if chosen == "csv" else "json"


def _csv_cell(value: open_data.Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


def _csv_line(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(values)
    return out.getvalue()


async def _rows(
    ctx: AppContext, connection: AsyncConnection, name: str
) -> AsyncIterator[open_data.Row]:
    if name == "cases":
        rows = open_data.cases(connection)
    elif name == "timelines":
        rows = open_data.timelines(connection)
    elif name == "proposal_votes":
        rows = open_data.proposal_votes(connection)
    elif name == "opinion_results":
        rows = open_data.opinion_results(connection)
    elif name == "sortition_draws":
        rows = open_data.sortition_draws(connection)
    elif name == "sortition_strata":
        rows = open_data.sortition_strata(connection)
    else:  # budget_votes: counted by `count_box`, on a session of the same connection
        async with AsyncSession(bind=connection) as session:
            async for row in open_data.budget_votes(session, _recorded_digests(ctx)):
                yield row
        return
    async for row in rows:
        yield row


def _recorded_digests(ctx: AppContext) -> open_data.RecordedDigest:
    """The digest each cycle's workflow recorded at a vote's close, one query per cycle."""
    votes: dict[int, dict[str, str | None]] = {}

    async def recorded(year: int, kind: str) -> str | None:
        if year not in votes:
            handle = ctx.temporal.get_workflow_handle(budget_cycle_workflow_id(year))
            try:
                state = await handle.query(BudgetCycleWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
            except (RPCError, WorkflowQueryFailedError, WorkflowQueryRejectedError):
                votes[year] = {}
            else:
                votes[year] = {k: v.digest for k, v in state.votes.items()}
        return votes[year].get(kind)

    return recorded


async def _encoded(
    ctx: AppContext, dataset: open_data.Dataset, format_: Format
) -> AsyncGenerator[bytes]:
    """The dataset's body, a batch of rows per chunk; the first chunk (the header and the
    first batch) comes once the first batch is read."""
    columns = list(dataset.columns)
    if format_ == "csv":
        head, separator, tail = _csv_line(columns), "", ""
    else:
        head = (
            "{"
            + f'"dataset": {json.dumps(dataset.name)}, "columns": {json.dumps(columns)}, '
            + '"items": ['
        )
        separator, tail = ",", "\n]}\n"
    pending: list[str] = [head]
    first_row = True
    async with ctx.engine.connect() as connection:
        async for row in _rows(ctx, connection, dataset.name):
            if format_ == "csv":
                pending.append(_csv_line([_csv_cell(row[c]) for c in columns]))
            else:
                lead = "\n" if first_row else separator + "\n"
                pending.append(lead + json.dumps(row, ensure_ascii=False))
            first_row = False
            if len(pending) >= open_data.BATCH:
                yield "".join(pending).encode()
                pending = []
    pending.append(tail)
    yield "".join(pending).encode()


async def _after(first: bytes, rest: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """`first`, then the rest of the body; the rest is closed (its connection given back)
    even when the client goes away mid-stream."""
    try:
        yield first
        async for chunk in rest:
            yield chunk
    finally:
        await rest.aclose()


@router.get(
    "/{dataset}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The dataset: a JSON object `{dataset, columns, items}` or a CSV "
            "table with a header line.",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
    description=(
        "One open dataset, streamed, no token needed. The format is named either by the "
        "path's extension (`/v1/open-data/cases.json`, `/v1/open-data/cases.csv`) or by "
        "`?format=json|csv` on the bare name (`/v1/open-data/cases?format=csv`); JSON when "
        "neither says; both spellings are accepted, and a `?format=` that contradicts the "
        "extension is a 422. The JSON and the CSV of a dataset hold the same values: in the "
        "CSV an empty cell is null, booleans are `true`/`false`, and a text cell starting with "
        "`=`, `+`, `-` or `@` is prefixed with `'` (no spreadsheet formula). Times are Seoul "
        "time. A dataset the index does not list is a 404 naming `path.dataset`."
    ),
)
async def open_data_export(
    dataset: Annotated[
        str,
        PathParam(
            max_length=100, description="A dataset's name, optionally with `.json` or `.csv`."
        ),
    ],
    ctx: Ctx,
    format_: Annotated[
        str | None,
        Query(alias="format", max_length=20, description="json or csv (default json)."),
    ] = None,
) -> StreamingResponse:
    found, chosen = _choose(dataset, format_)
    body = _encoded(ctx, found, chosen)
    try:
        first = await anext(body)
    except BaseException:
        await body.aclose()
        raise
    headers = {"Content-Disposition": f'inline; filename="{found.name}.{chosen}"'}
    return StreamingResponse(_after(first, body), media_type=MEDIA_TYPES[chosen], headers=headers)
