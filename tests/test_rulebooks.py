"""Rulebooks: validated data, pinned by content hash; the quorum and pass rule they define."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
import temporalio.converter

import rulebooks
from models.calendar import (
    SEOUL,
    ScheduledPhase,
    move_phase_end,
    phase_at,
    phase_ends_at,
    phase_schedule,
)
from models.rules import PhaseWindow, PinnedRules, ProposalRules, Rulebook
from rulebooks import RulebookError


def proposal_rules(pinned: PinnedRules) -> ProposalRules:
    rules = pinned.rulebook.proposal
    assert rules is not None
    return rules


SEOUL_2018 = rulebooks.load("seoul-2018")
RULES = proposal_rules(SEOUL_2018)


def test_seoul_2018_has_every_proposal_and_execution_key_of_rules_md() -> None:
    assert RULES.review_support_threshold == 10
    assert RULES.dept_review_days == 20
    assert RULES.appropriateness_days == 10
    assert RULES.vote_days == 30
    assert RULES.krw_per_voter == 100_000
    assert (RULES.min_voters, RULES.max_voters) == (1_000, 100_000)
    assert (RULES.pass_yes_share, RULES.pass_yes_share_strict) == ("1/2", True)
    assert SEOUL_2018.rulebook.execution is not None
    assert SEOUL_2018.rulebook.execution.budget_years_max == 2


def test_content_hash_is_stable_and_changes_with_content() -> None:
    text = (rulebooks.BUILTIN_DIR / "seoul-2018.toml").read_text()
    assert rulebooks.parse(text).content_hash == SEOUL_2018.content_hash
    changed = text.replace("dept_review_days = 20", "dept_review_days = 21")
    assert rulebooks.parse(changed).content_hash != SEOUL_2018.content_hash


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("vote_days = 30", "vote_days = 30\nvote_hours = 2"), "proposal.vote_hours"),
        (("vote_days = 30", "vote_days = 0"), "proposal.vote_days"),
        (("vote_days = 30", 'vote_days = "thirty"'), "proposal.vote_days"),
        (('pass_yes_share = "1/2"', 'pass_yes_share = "half"'), "proposal.pass_yes_share"),
        (("min_voters = 1_000", "min_voters = 200_000"), "min_voters is greater than"),
        (("[escalation]", "[escalations]"), "escalations"),
    ],
)
def test_invalid_rulebooks_are_rejected_naming_the_key(
    change: tuple[str, str], message: str
) -> None:
    text = (rulebooks.BUILTIN_DIR / "seoul-2018.toml").read_text()
    with pytest.raises(RulebookError, match=message):
        rulebooks.parse(text.replace(*change))


def test_unknown_rulebook_names_the_available_ones() -> None:
    with pytest.raises(RulebookError, match="seoul-2018"):
        rulebooks.load("seoul-1999")


def test_file_name_and_rulebook_name_must_agree(tmp_path: object) -> None:
    text = (rulebooks.BUILTIN_DIR / "seoul-2018.toml").read_text()
    with pytest.raises(RulebookError, match="named"):
        rulebooks.parse(text, expected_name="seoul-2019")


@pytest.mark.parametrize(
    ("cost_krw", "quorum"),
    [
        (0, 1_000),  # clamped up to min_voters
        (100_000_000, 1_000),
        (100_000_001, 1_001),  # one voter per started 100,000 KRW
        (1_000_000_000, 10_000),  # the document's example: 1,000,000 thousand KRW
        (10_000_000_000, 100_000),
        (10_000_100_000, 100_000),  # clamped down to max_voters
    ],
)
def test_quorum_follows_the_cost(cost_krw: int, quorum: int) -> None:
    assert RULES.quorum(cost_krw) == quorum


@pytest.mark.parametrize(
    ("yes", "turnout", "quorum", "passed"),
    [
        (5_001, 10_000, 10_000, True),  # the document's example
        (5_000, 10_000, 10_000, False),  # exactly half is not more than half
        (9_999, 9_999, 10_000, False),  # quorum - 1
        (6_000, 10_000, 10_000, True),
        (0, 0, 1_000, False),
    ],
)
def test_pass_rule(yes: int, turnout: int, quorum: int, passed: bool) -> None:
    assert RULES.passes(yes=yes, turnout=turnout, quorum=quorum) is passed


def test_published_rulebook_hashes_never_change() -> None:
    """Running cases pin these hashes: a schema change must not alter a published rulebook's."""
    assert SEOUL_2018.content_hash == (
        "sha256:ca94118a98c30ae90d2c947660709caeabf24a8f7ab32a9df2a22c59d9ac91da"
    )
    assert rulebooks.load("seoul-2020").content_hash == (
        "sha256:154b4bcc2a029a0bfd84073ddeb823532fc937b3923259a1c22dcde1c412187d"
    )
    assert SEOUL_2021.content_hash == (
        "sha256:95b05547fdb826c2b314ceb42b7118c79213682813433769135514f1783af685"
    )


# --- seoul-2021: the budget-year cycle -------------------------------------------------------

SEOUL_2021 = rulebooks.load("seoul-2021")
BOOK = SEOUL_2021.rulebook
TEXT_2021 = (rulebooks.BUILTIN_DIR / "seoul-2021.toml").read_text()


def calendar_of(book: Rulebook) -> dict[str, dict[str, PhaseWindow]]:
    assert book.calendar is not None
    return book.calendar


CALENDAR = calendar_of(BOOK)


def test_seoul_2021_holds_everything_seoul_2020_holds() -> None:
    seoul_2020 = rulebooks.as_json(rulebooks.load("seoul-2020").rulebook)
    seoul_2021 = rulebooks.as_json(BOOK)
    for section in set(seoul_2020) - {"name", "title", "source"}:
        assert seoul_2021[section] == seoul_2020[section], section


def test_seoul_2021_has_every_budget_key() -> None:
    assert BOOK.vote is not None and BOOK.selection is not None
    assert BOOK.vote.group_weights == {"budget_school": 0.10, "general": 0.90}
    assert sum(BOOK.vote.exact_weights().values()) == 1
    assert BOOK.selection.rule == "drop_lowest"
    assert BOOK.deliberative is not None
    assert (BOOK.deliberative.shortlist_ratio, BOOK.deliberative.level_tolerance) == (1.30, 0.05)
    metro = BOOK.metro
    assert metro is not None
    assert (metro.cap_general_krw, metro.cap_event_krw) == (4_000_000_000, 300_000_000)
    assert (metro.vote_drop_ratio_min, metro.vote_drop_ratio_max) == (0.05, 0.30)
    assert (metro.total_krw, metro.min_districts) == (30_000_000_000, 2)
    assert BOOK.review is not None and 0 <= BOOK.review.inclusiveness_weight <= 1
    assert BOOK.governance is not None and BOOK.governance.ceiling_krw == 10_000_000_000
    district = BOOK.district
    assert district is not None
    assert (district.district_count, district.ceiling_krw) == (24, 1_000_000_000)
    assert district.strategic_ceiling_krw == 300_000_000
    assert (district.strategic_count_min, district.strategic_count_max) == (5, 6)
    assert BOOK.neighbourhood is not None and BOOK.neighbourhood.ceiling_krw == 6_000_000_000
    assert set(CALENDAR) == {"deliberative", "metro"}
    assert BOOK.budget is not None
    assert (BOOK.budget.deliberation_window_start, BOOK.budget.deliberation_window_end) == (
        "03-01",
        "08-31",
    )


def test_older_rulebooks_have_no_budget_sections() -> None:
    """Absent sections stay out of the hashed content, so older hashes do not move."""
    content = rulebooks.as_json(SEOUL_2018.rulebook)
    assert not {"vote", "selection", "metro", "calendar"} & set(content)


def test_seoul_2021_travels_through_a_workflow_input_unchanged() -> None:
    converter = temporalio.converter.DataConverter.default.payload_converter
    [back] = converter.from_payloads(converter.to_payloads([SEOUL_2021]), [PinnedRules])
    assert back == SEOUL_2021
    assert rulebooks.content_hash(back.rulebook) == SEOUL_2021.content_hash


def test_metro_caps_are_exclusive_and_the_drop_ratio_a_range() -> None:
    metro = BOOK.metro
    assert metro is not None
    assert metro.within_cap(3_999_999_999, event=False)
    assert not metro.within_cap(4_000_000_000, event=False)
    assert metro.within_cap(299_999_999, event=True)
    assert not metro.within_cap(300_000_000, event=True)
    assert metro.allows_drop_ratio(0.05) and metro.allows_drop_ratio(0.30)
    assert not metro.allows_drop_ratio(0.04) and not metro.allows_drop_ratio(0.31)


def test_deliberative_levels_allow_the_tolerance() -> None:
    rules = BOOK.deliberative
    assert rules is not None
    assert rules.shortlist_bounds_krw(1_000_000_000) == (1_250_000_000, 1_350_000_000)
    assert rules.selection_bounds_krw(1_000_000_000) == (950_000_000, 1_050_000_000)
    assert rules.shortlist_bounds_krw(3) == (4, 4)  # 3.75 .. 4.05 KRW, inclusive whole won


def test_weights_are_compared_as_the_decimals_written() -> None:
    three = TEXT_2021.replace(
        "group_weights = { budget_school = 0.10, general = 0.90 }",
        "group_weights = { general = 0.7, square = 0.2, budget_school = 0.1 }",
    )
    assert 0.7 + 0.2 + 0.1 != 1  # as binary floats
    vote = rulebooks.parse(three).rulebook.vote
    assert vote is not None and sum(vote.exact_weights().values()) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("general = 0.90", "general = 0.80"), "vote.group_weights must sum to exactly 1"),
        (("general = 0.90", "general = 0.95"), "vote.group_weights must sum to exactly 1"),
        (
            ("budget_school = 0.10, general = 0.90", "budget_school = -0.1, general = 1.1"),
            "vote.group_weights.budget_school",
        ),
        (("budget_school = 0.10, general = 0.90", ""), "vote.group_weights names no voter group"),
        (('rule = "drop_lowest"', 'rule = "first_come"'), "selection.rule"),
        (
            ("vote_drop_ratio_min = 0.05", "vote_drop_ratio_min = 0.40"),
            r"metro.vote_drop_ratio_min \(0.4\) is greater than metro.vote_drop_ratio_max",
        ),
        (("vote_drop_ratio_min = 0.05", "vote_drop_ratio_min = 0"), "metro.vote_drop_ratio_min"),
        (("vote_drop_ratio_max = 0.30", "vote_drop_ratio_max = 1.0"), "metro.vote_drop_ratio_max"),
        (("shortlist_ratio = 1.30", "shortlist_ratio = 0.9"), "deliberative.shortlist_ratio"),
        (("inclusiveness_weight = 0.2", "inclusiveness_weight = 2"), "review.inclusiveness_weight"),
        (("strategic_count_min = 5", "strategic_count_min = 7"), "district.strategic_count_min"),
        (("min_districts = 2", "min_districts = 2\nmax_districts = 25"), "metro.max_districts"),
        (
            ('screening = { start = "03-01"', 'screening = { start = "02-15"'),
            "calendar.metro.screening starts 02-15 but calendar.metro.call ends 03-01: "
            "calendar.metro.screening overlaps it",
        ),
        (
            ('screening = { start = "03-01"', 'screening = { start = "03-15"'),
            "calendar.metro.screening .* leaves a gap after it",
        ),
        (
            ('end = "08-21" }', 'end = "07-15" }'),
            r"calendar.metro.vote ends \(07-15\) no later than it starts \(08-01\)",
        ),
        (
            (", end_year_offset = 1 }\n\n[calendar.metro]", " }\n\n[calendar.metro]"),
            "calendar.deliberative.council ends",
        ),
        (('forming = { start = "02-01"', 'forming = { start = "02-29"'), "not a date in every"),
        (('forming = { start = "02-01"', 'forming = { start = "2-1"'), "calendar.deliberative"),
        (('call = { start = "01-01"', 'closed = { start = "01-01"'), "'closed' is reserved"),
        (("end_year_offset = 1", "end_year_offset = 1, end_hour = 9"), "end_hour"),
    ],
)
def test_invalid_budget_keys_are_rejected_naming_the_key(
    change: tuple[str, str], message: str
) -> None:
    changed = TEXT_2021.replace(*change)
    assert changed != TEXT_2021
    with pytest.raises(RulebookError, match=message):
        rulebooks.parse(changed)


def test_phases_written_out_of_order_are_rejected() -> None:
    lines = TEXT_2021.splitlines(keepends=True)
    vote = next(i for i, line in enumerate(lines) if line.startswith('vote = { start = "08-01"'))
    assembly = next(i for i, line in enumerate(lines) if line.startswith("assembly = "))
    lines[vote], lines[assembly] = lines[assembly], lines[vote]
    with pytest.raises(RulebookError, match=r"calendar\.metro\.assembly starts 08-21 but"):
        rulebooks.parse("".join(lines))


def seoul(month: int, day: int, year: int = 2021) -> datetime:
    return datetime(year, month, day, tzinfo=SEOUL)


#: (phase before, phase from, boundary at 00:00 Seoul), for the cycle of 2021.
BOUNDARIES = {
    "deliberative": [
        ("not_started", "allocation", seoul(1, 1)),
        ("allocation", "forming", seoul(2, 1)),
        ("forming", "shortlist", seoul(3, 1)),
        ("shortlist", "deliberation", seoul(4, 1)),
        ("deliberation", "vote", seoul(7, 20)),
        ("vote", "drafting", seoul(8, 1)),
        ("drafting", "council", seoul(12, 1)),
        ("council", "closed", seoul(1, 1, 2022)),
    ],
    "metro": [
        ("not_started", "call", seoul(1, 1)),
        ("call", "screening", seoul(3, 1)),
        ("screening", "council_review", seoul(4, 15)),
        ("council_review", "objections", seoul(7, 1)),
        ("objections", "vote", seoul(8, 1)),
        ("vote", "assembly", seoul(8, 21)),
        ("assembly", "drafting", seoul(9, 11)),
        ("drafting", "council", seoul(12, 1)),
        ("council", "closed", seoul(1, 1, 2022)),
    ],
}


@pytest.mark.parametrize(
    ("kind", "before", "after", "boundary"),
    [(kind, *row) for kind, rows in BOUNDARIES.items() for row in rows],
)
def test_the_phase_changes_exactly_at_each_boundary_in_seoul_time(
    kind: str, before: str, after: str, boundary: datetime
) -> None:
    schedule = phase_schedule(CALENDAR, kind, 2021)
    second = timedelta(seconds=1)
    assert phase_at(schedule, boundary - second) == before
    assert phase_at(schedule, boundary) == after  # [start, end): at the end, the next phase
    assert phase_at(schedule, boundary + second) == after
    assert phase_at(schedule, (boundary - second).astimezone(UTC)) == before
    assert phase_ends_at(schedule, boundary - second) == boundary


def test_schedules_are_in_utc_from_seoul_midnights() -> None:
    schedule = phase_schedule(CALENDAR, "metro", 2021)
    assert [p.phase for p in schedule] == [after for _, after, _ in BOUNDARIES["metro"][:-1]]
    screening = schedule[1]
    # 03-01 00:00 Seoul is 02-28 15:00 UTC.
    assert screening.starts_at == datetime(2021, 2, 28, 15, 0, tzinfo=UTC)
    assert screening.starts_at.utcoffset() == timedelta(0)
    assert all(p.ends_at == q.starts_at for p, q in pairwise(schedule))
    assert schedule[-1].ends_at == datetime(2021, 12, 31, 15, 0, tzinfo=UTC)
    # A leap year: 03-01 00:00 Seoul is 02-29 15:00 UTC.
    leap = phase_schedule(CALENDAR, "metro", 2024)
    assert leap[1].starts_at == datetime(2024, 2, 29, 15, 0, tzinfo=UTC)


def test_phase_questions_and_their_errors() -> None:
    schedule = phase_schedule(CALENDAR, "deliberative", 2021)
    assert phase_ends_at(schedule, seoul(1, 1, 2022)) is None
    assert phase_ends_at(schedule, seoul(6, 1, 2020)) == seoul(1, 1)
    assert phase_at([], seoul(6, 1)) == "not_started"
    with pytest.raises(ValueError, match="no type 'governance'; it has: deliberative, metro"):
        phase_schedule(CALENDAR, "governance", 2021)
    with pytest.raises(ValueError, match="no time zone"):
        phase_at(schedule, datetime(2021, 3, 1))


def test_moving_a_phase_end_moves_the_next_start() -> None:
    schedule = phase_schedule(CALENDAR, "metro", 2021)
    moved = move_phase_end(schedule, "vote", seoul(8, 24))
    assert moved[4] == ScheduledPhase("vote", seoul(8, 1), seoul(8, 24))
    assert moved[5].starts_at == seoul(8, 24) and moved[5].ends_at == seoul(9, 11)
    assert phase_at(moved, seoul(8, 23)) == "vote"
    assert phase_at(moved, seoul(8, 24)) == "assembly"
    with pytest.raises(ValueError, match="after assembly ends"):
        move_phase_end(schedule, "vote", seoul(9, 11))
    with pytest.raises(ValueError, match="before it starts"):
        move_phase_end(schedule, "vote", seoul(8, 1))
    with pytest.raises(ValueError, match="no phase 'voting'"):
        move_phase_end(schedule, "voting", seoul(8, 24))
    last = move_phase_end(schedule, "council", seoul(1, 15, 2022))
    assert phase_at(last, seoul(1, 14, 2022)) == "council"
