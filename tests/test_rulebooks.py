"""Rulebooks: validated data, pinned by content hash; the quorum and pass rule they define."""

from __future__ import annotations

import pytest

import rulebooks
from models.rules import PinnedRules, ProposalRules
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
