"""whole-budget participation: the records of a cycle (material requests, opinions, the opinion
statement, waste reports) and the departments' answers (process.md §9, 003 1-3-①)

Rows written by the API, each in its `[participation]` window of the cycle's rulebook; one
opinion statement per cycle, one answer per department and record. `author_id` is never shown
in public.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "budget_participation",
        sa.Column("id", text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("stage", text(), nullable=False),
        sa.Column("kind", text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("project_id", text(), nullable=True),
        sa.Column("department", text(), nullable=True),
        sa.Column("author_id", text(), nullable=False),
        sa.Column("author_role", text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["year"], ["budget_cycles.year"]),
        sa.ForeignKeyConstraint(["project_id"], ["budget_projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_budget_participation_year_created",
        "budget_participation",
        ["year", "created_at", "id"],
    )
    op.create_index(
        "uq_budget_participation_statement",
        "budget_participation",
        ["year"],
        unique=True,
        postgresql_where=sa.text("kind = 'opinion_statement'"),
    )
    op.create_index("ix_budget_participation_project_id", "budget_participation", ["project_id"])
    op.create_index("ix_budget_participation_author_id", "budget_participation", ["author_id"])
    op.create_table(
        "budget_participation_answers",
        sa.Column("id", text(), nullable=False),
        sa.Column("record_id", text(), nullable=False),
        sa.Column("department", text(), nullable=False),
        sa.Column("author_id", text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["record_id"], ["budget_participation.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "record_id", "department", name="uq_budget_participation_answers_department"
        ),
    )
    op.create_index(
        "ix_budget_participation_answers_record_id",
        "budget_participation_answers",
        ["record_id"],
    )


def downgrade() -> None:
    op.drop_table("budget_participation_answers")
    op.drop_table("budget_participation")
