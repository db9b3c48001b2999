"""indexes for finding one person's rows (`GET /v1/me/activity`)

The caller's cases are found by who wrote or joined them; these columns had no index, so
each call scanned the whole table (comments, objections, opinions, answers, body members).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (index, table, column)
_INDEXES = (
    ("ix_comments_author_id", "comments", "author_id"),
    ("ix_project_objections_author_id", "project_objections", "author_id"),
    ("ix_project_opinions_author_id", "project_opinions", "author_id"),
    ("ix_budget_participation_answers_author_id", "budget_participation_answers", "author_id"),
    ("ix_budget_body_members_person_id", "budget_body_members", "person_id"),
)


def upgrade() -> None:
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])


def downgrade() -> None:
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
