"""A public forum (process.md §4): open for `forum.days`, then counted, judged and handed on.

Participation, opinions, reports and moderation live in Postgres; the workflow opens the box,
closes it when the time is up, records the tally with its digest, decides eligibility for
deliberation (participants ≥ threshold and, for a for/against forum, a strict majority for),
and hands an eligible forum to its budget year.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

from temporalio import workflow
from temporalio.exceptions import ApplicationError

from workflows.common import (
    CaseRecorder,
    activity_options,
    counting_options,
    reject,
    require_idle,
    require_text,
    require_writable,
    tell_case,
)

with workflow.unsafe.imports_passed_through():
    from activities.opinions import OpinionBoxes
    from activities.records import CaseRecords, ForumProjection
    from models.budget import LinkedForum
    from models.calendar import add_days, deliberation_year, in_seoul
    from models.case import ErrorType, Role, TimelineEntry
    from models.deliberation import (
        ForumKind,
        ForumStart,
        ForumState,
        ForumStatus,
        OpinionTally,
        Recommendation,
    )
    from models.ids import budget_cycle_workflow_id

    # Imported here so the sandbox knows the module when it resolves ForumStart.rules's types.
    from models.rules import PinnedRules  # noqa: F401


def eligible_for_deliberation(kind: ForumKind, tally: OpinionTally, threshold: int) -> bool:
    if tally.participants < threshold:
        return False
    return kind is ForumKind.DISCUSSION or tally.for_ * 2 > tally.participants


#: The hand-off tells the budget-year cycles (the one the forum joins, and the one it was
#: carried over from), which also read the forums' projections when they start.
TELLS_CYCLES_PATCH = "forum-tells-budget-cycles"
#: The hand-off's year (and the closing time told to the cycles) comes from the forum's
#: scheduled close; forums handed over before read the clock when the count was done.
SCHEDULED_CLOSE_PATCH = "forum-hands-off-at-scheduled-close"


@workflow.defn
class ForumWorkflow(CaseRecorder):
    @workflow.init
    def __init__(self, start: ForumStart) -> None:
        self._start = start
        self._state = ForumState(forum_id=start.forum_id)
        self._timeline: list[TimelineEntry] = []
        #: Projections in flight: no decision is taken while one is (see `require_idle`).
        self._recording = 0

    @workflow.query
    def state(self) -> ForumState:
        return self._state

    @workflow.run
    async def run(self, start: ForumStart) -> ForumState:
        book = start.rules.rulebook
        if book.forum is None or book.linked is None or book.budget is None:
            raise ApplicationError(f"rulebook {start.rules.name} has no forum rules")
        now = workflow.now()
        self._state.opens_at = now
        closes_at = add_days(now, book.forum.days)
        self._state.closes_at = closes_at
        await workflow.execute_activity_method(
            OpinionBoxes.open_box, start.forum_id, **activity_options()
        )
        origin = f" from proposal {start.origin_proposal_id}" if start.origin_proposal_id else ""
        await self._record(
            "opened",
            Role.ADMIN if start.origin_proposal_id is None else Role.SYSTEM,
            f"{start.kind.value} forum{origin}, rulebook {start.rules.name} "
            f"({start.rules.content_hash}); open until {in_seoul(closes_at).isoformat()}",
        )
        await workflow.sleep(closes_at - now)
        tally = await workflow.execute_activity_method(
            OpinionBoxes.close_and_count, start.forum_id, **counting_options()
        )
        threshold = book.linked.deliberation_participant_threshold
        eligible = eligible_for_deliberation(start.kind, tally, threshold)
        self._state.tally = tally
        self._state.status = ForumStatus.CLOSED
        self._state.eligible_for_deliberation = eligible
        await self._record(
            "closed",
            Role.SYSTEM,
            f"{tally.participants} participants (for {tally.for_}, against {tally.against}, "
            f"other {tally.other}), {tally.opinions} opinions; digest {tally.digest}; "
            + ("eligible" if eligible else "not eligible")
            + f" for deliberation (threshold {threshold})",
        )
        if eligible:
            await self._hand_off_to_budget_year(
                book.budget.deliberation_window_start, book.budget.deliberation_window_end
            )
        if start.panel_draw_id is not None:
            await workflow.wait_condition(lambda: self._state.recommendation is not None)
            await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    @workflow.update
    async def publish_recommendation(self, recommendation: Recommendation) -> ForumState:
        self._state.recommendation = recommendation.text
        await self._record(
            "recommendation_published", Role(recommendation.actor_role), recommendation.text
        )
        return self._state

    @publish_recommendation.validator
    def _validate_recommendation(self, recommendation: Recommendation) -> None:
        if recommendation.actor_role != Role.ADMIN.value:
            raise reject(ErrorType.FORBIDDEN, "only the operations team publishes")
        require_idle(self._recording)
        if self._start.panel_draw_id is None:
            raise reject(ErrorType.CONFLICT, "only a public deliberation has a recommendation")
        if self._state.status is not ForumStatus.CLOSED:
            raise reject(ErrorType.CONFLICT, "the recommendation follows the forum's close")
        if self._state.recommendation is not None:
            raise reject(ErrorType.CONFLICT, "the recommendation is already published")
        require_text(recommendation.text, "text")
        require_writable(recommendation)

    async def _hand_off_to_budget_year(self, window_start: str, window_end: str) -> None:
        """THE hand-off of an eligible forum to the citizen council of a budget year.

        The year is the one whose deliberation window is open when the forum closes, or else
        the next one (carry-over, process.md §4). It is recorded on the forum, which is how
        `GET /v1/forums?budget_year=` lists it; the budget-year cycle takes its forums from
        there.
        """
        closed_at = workflow.now()
        if workflow.patched(SCHEDULED_CLOSE_PATCH) and self._state.closes_at is not None:
            # the scheduled close, not the moment the count finished: a forum closing at
            # 23:59:59 on 31 August whose count ends after midnight is not carried over
            closed_at = self._state.closes_at
        year, carried_over = deliberation_year(closed_at, window_start, window_end)
        self._state.budget_year = year
        self._state.carried_over = carried_over
        await self._record(
            "handed_to_budget_year",
            Role.SYSTEM,
            f"to the {year} citizen council"
            + (" (carried over: the window had closed)" if carried_over else ""),
        )
        # Forums handed over before their cycles heard of it replay without telling them.
        if not workflow.patched(TELLS_CYCLES_PATCH):
            return
        origin = year - 1 if carried_over else None
        joined = LinkedForum(self._start.forum_id, closed_at, carried_over_from=origin)
        await tell_case(budget_cycle_workflow_id(year), "linked_forum", joined)
        if origin is not None:
            left = LinkedForum(self._start.forum_id, closed_at, carried_over_from=origin)
            await tell_case(budget_cycle_workflow_id(origin), "forum_carried_over", left)

    def _stage(self) -> str:
        return self._state.status.value

    def _projection(self, entry: TimelineEntry) -> tuple[Callable[..., Awaitable[None]], Any]:
        return CaseRecords.project_forum, ForumProjection(
            state=copy.deepcopy(self._state), entry=entry
        )
