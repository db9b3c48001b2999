"""`minju audit`: what an auditor does, from the command line, for every kind of case.

    minju audit cases --kind proposal                    # the cases of a kind
    minju audit export proposal-<id> --out audit/        # histories as Temporal JSON files
    minju audit export --kind forum --out audit/         # every case of a kind (--all: every kind)
    minju audit replay proposal-<id>                     # replayed by the server's code
    minju audit replay --kind proposal                   # every case of a kind, one by one
    minju audit replay --dir audit/                      # exported files, against THIS checkout
    minju audit recount <proposal id | budget:<year>:<kind> | forum id | ask id>
    minju audit timers proposal-<id>                     # the transitions timers made
    minju audit log                                      # the audit log itself

Everything but `replay --dir` goes through the HTTP API as an auditor (`/v1/audit/...`), so the
server checks the role and logs every call; a bulk command shows a progress bar and exits 1 if
any case diverged or any recount did not match. `replay --dir` replays exported histories with
the workflow code of the checkout it runs from (payloads decrypted with `MINJU_PAYLOAD_KEYS`
when they are encrypted: the auditor's machine needs the keys), the way to check that a new
version of the code still replays what production recorded.

The token: `--token` (or `MINJU_TOKEN`); else one signed here with `--jwt-secret` (or
`MINJU_JWT_SECRET`, the server's secret) for the subject `--as`; else, against a dev stack
(`minju up`), one from `/v1/dev/tokens`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from temporalio.client import WorkflowHistory

from api.audit_service import CASE_KINDS, SORTITION_PREFIX
from api.auth import issue_token

EXIT_DIVERGED = 1
EXIT_USAGE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("MINJU_URL", "http://127.0.0.1:8000"),
        help="the API (default $MINJU_URL or http://127.0.0.1:8000)",
    )
    parser.add_argument("--token", default=os.environ.get("MINJU_TOKEN"), help="a bearer token")
    parser.add_argument(
        "--jwt-secret",
        default=os.environ.get("MINJU_JWT_SECRET"),
        help="the server's MINJU_JWT_SECRET, to sign an auditor token here",
    )
    parser.add_argument("--as", dest="subject", default="auditor-cli", help="token subject")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="audit_command", required=True, metavar="ACTION")

    def targets(sub: argparse.ArgumentParser, *, folder: bool = False) -> None:
        sub.add_argument("workflow_ids", nargs="*", metavar="WORKFLOW_ID")
        sub.add_argument("--kind", choices=CASE_KINDS, help="every case of this kind")
        sub.add_argument("--all", action="store_true", help="every case of every kind")
        if folder:
            sub.add_argument("--dir", type=Path, help="replay the exported histories in DIR here")

    cases = commands.add_parser("cases", help="list the cases of a kind")
    cases.add_argument("--kind", choices=CASE_KINDS, required=True)
    export = commands.add_parser("export", help="write histories as Temporal JSON files")
    targets(export)
    export.add_argument("--out", type=Path, default=Path("audit"), help="folder (default audit)")
    replay = commands.add_parser("replay", help="replay cases against the code")
    targets(replay, folder=True)
    recount = commands.add_parser("recount", help="recount closed ballot boxes")
    recount.add_argument("ballot_ids", nargs="+", metavar="BALLOT_ID")
    timers = commands.add_parser("timers", help="the transitions timers made")
    targets(timers)
    commands.add_parser("log", help="the audit log")


class AuditClient:
    """The auditor's side of `/v1/audit`."""

    def __init__(self, http: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self._http = http
        self._headers = headers

    @classmethod
    async def token(cls, http: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, str]:
        token = args.token
        if not token and args.jwt_secret:
            token = issue_token(args.jwt_secret, {"sub": args.subject, "role": "auditor"})
        if not token:
            answer = await http.post(
                "/v1/dev/tokens", json={"sub": args.subject, "role": "auditor"}
            )
            if answer.status_code != 200:
                raise SystemExit(
                    "no token: give --token or --jwt-secret (the server has no dev tokens: "
                    f"{answer.status_code})"
                )
            token = answer.json()["token"]
        return {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **params: Any) -> Any:
        answer = await self._http.request(method, path, headers=self._headers, params=params)
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text
            raise AuditError(f"{method} {path}: {answer.status_code} {detail}")
        return answer.json()

    async def cases(self, kind: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"kind": kind}
            if after is not None:
                params["after"] = after
            page = await self.call("GET", "/v1/audit/cases", **params)
            found += page["items"]
            after = page["next_after"]
            if after is None:
                return found

    async def workflow_ids(self, args: argparse.Namespace) -> list[str]:
        """The workflow ids the command names: given, of `--kind`, or of every kind."""
        ids = list(args.workflow_ids)
        kinds = CASE_KINDS if args.all else ([args.kind] if args.kind else [])
        for kind in kinds:
            ids += [case["workflow_id"] for case in await self.cases(kind)]
        return ids


class AuditError(Exception):
    """The API refused an audit call: the message says which and why."""


def _progress(console: Console, quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )


async def _export(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    ids = await client.workflow_ids(args)
    if not ids:
        console.print("nothing to export: name workflow ids, --kind or --all")
        return EXIT_USAGE
    args.out.mkdir(parents=True, exist_ok=True)
    events = 0
    with _progress(console, args.no_progress) as progress:
        task = progress.add_task("export", total=len(ids))
        for workflow_id in ids:
            history = await client.call("GET", f"/v1/audit/cases/{workflow_id}/history")
            (args.out / f"{workflow_id}.json").write_text(json.dumps(history, indent=1))
            events += len(history.get("events", []))
            progress.advance(task)
    console.print(f"exported {len(ids)} cases ({events} events) to {args.out}/")
    return 0


def load_histories(folder: Path) -> list[WorkflowHistory]:
    """The exported histories in `folder`, sortition draws' records left out."""
    return [
        WorkflowHistory.from_json(path.stem, path.read_text())
        for path in sorted(folder.glob("*.json"))
        if not path.stem.startswith(SORTITION_PREFIX)
    ]


async def replay_folder(folder: Path) -> tuple[int, dict[str, str]]:
    """Replay every exported history in `folder` (`<workflow id>.json`) against this code:
    (how many were replayed, the divergence of each that did not, by workflow id). Sortition
    draws (their record, not a history) are skipped: the server re-runs them."""
    from api.auditors import replay_histories
    from minju.codec import replay_data_converter
    from minju.config import Settings

    histories = await asyncio.to_thread(load_histories, folder)
    divergences = await replay_histories(histories, replay_data_converter(Settings.from_env()))
    return len(histories), divergences


async def _replay(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    if args.dir is not None:
        count, divergences = await replay_folder(args.dir)
        console.print(f"replayed {count} histories from {args.dir}/ against this code")
    else:
        ids = await client.workflow_ids(args)
        if not ids:
            console.print("nothing to replay: name workflow ids, --kind, --all or --dir")
            return EXIT_USAGE
        divergences = {}
        with _progress(console, args.no_progress) as progress:
            task = progress.add_task("replay", total=len(ids))
            for workflow_id in ids:
                result = await client.call("POST", f"/v1/audit/cases/{workflow_id}/replay")
                if not result["replayed"]:
                    divergences[workflow_id] = str(result["divergence"])
                progress.advance(task)
        count = len(ids)
        console.print(f"replayed {count} cases against the server's code")
    for workflow_id, divergence in sorted(divergences.items()):
        console.print(f"[red]DIVERGED[/red] {workflow_id}: {divergence}")
    console.print(f"{count - len(divergences)} of {count} replayed without divergence")
    return EXIT_DIVERGED if divergences else 0


async def _recount(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    failed = 0
    for ballot_id in args.ballot_ids:
        result = await client.call("GET", f"/v1/audit/ballots/{ballot_id}/recount")
        table = Table(title=f"recount of {ballot_id} ({result['kind']}, {result['workflow_id']})")
        table.add_column("count")
        table.add_column("recount")
        table.add_column("recorded in the history")
        recorded = result.get("recorded") or {}
        for key in ("yes", "no", "turnout", "approvals", "ballots", "positions", "digest"):
            if result.get(key) is None:
                continue
            mine = recorded.get(key, recorded.get("participants") if key == "turnout" else None)
            table.add_row(key, json.dumps(result[key]), json.dumps(mine))
        console.print(table)
        matches = result["matches_recorded_tally"]
        console.print(f"matches the recorded tally: {matches}")
        failed += matches is not True
    return EXIT_DIVERGED if failed else 0


async def _timers(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    ids = await client.workflow_ids(args)
    table = Table(title="transitions made by a timer")
    for column in ("case", "seq", "at", "stage", "event", "note"):
        table.add_column(column)
    with _progress(console, args.no_progress) as progress:
        task = progress.add_task("histories", total=len(ids))
        for workflow_id in ids:
            if workflow_id.startswith(SORTITION_PREFIX):
                progress.advance(task)
                continue
            found = await client.call(
                "GET", f"/v1/audit/cases/{workflow_id}/transitions", trigger="timer"
            )
            for t in found["items"]:
                table.add_row(
                    workflow_id, str(t["seq"]), t["at"], t["stage"], t["event"], t["note"][:60]
                )
            progress.advance(task)
    console.print(table)
    return 0


async def _cases(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    table = Table(title=f"{args.kind} cases")
    for column in ("case id", "workflow id", "status"):
        table.add_column(column)
    for case in await client.cases(args.kind):
        table.add_row(case["case_id"], case["workflow_id"], case["status"])
    console.print(table)
    return 0


async def _log(client: AuditClient, args: argparse.Namespace, console: Console) -> int:
    table = Table(title="audit log")
    for column in ("id", "at", "auditor", "action", "target", "outcome"):
        table.add_column(column)
    after: int | None = None
    while True:
        page = await client.call("GET", "/v1/audit/log", **({"after": after} if after else {}))
        for e in page["items"]:
            table.add_row(
                str(e["id"]), e["at"], e["auditor"], e["action"], e["target"], e["outcome"][:60]
            )
        after = page["next_after"]
        if after is None:
            break
    console.print(table)
    return 0


_ACTIONS = {
    "cases": _cases,
    "export": _export,
    "replay": _replay,
    "recount": _recount,
    "timers": _timers,
    "log": _log,
}


async def run(args: argparse.Namespace, console: Console | None = None) -> int:
    console = console or Console()
    async with httpx.AsyncClient(base_url=args.url, timeout=300) as http:
        local = args.audit_command == "replay" and args.dir is not None
        client = AuditClient(http, {} if local else await AuditClient.token(http, args))
        try:
            return await _ACTIONS[args.audit_command](client, args, console)
        except AuditError as refused:
            console.print(f"[red]refused:[/red] {refused}")
            return EXIT_USAGE


def main(args: argparse.Namespace) -> int:
    return asyncio.run(run(args))


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of `minju audit ...` (for tests and `python -m minju.audit`)."""
    parser = argparse.ArgumentParser(prog="minju audit", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse(sys.argv[1:])))
