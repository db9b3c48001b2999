"""budget projects: one row per project, written by its workflow's projection; objections

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    op.create_table(
        "budget_projects",
        sa.Column("id", text(), nullable=False),
        sa.Column("workflow_id", text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("kind", text(), nullable=False),
        sa.Column("field", text(), nullable=False),
        sa.Column("title", text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("proposer_id", text(), nullable=False),
        sa.Column("event", sa.Boolean(), nullable=False),
        sa.Column("districts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("years", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("linked", sa.Boolean(), nullable=False),
        sa.Column("submitted_cost_krw", sa.BigInteger(), nullable=False),
        sa.Column("rulebook", text(), nullable=False),
        sa.Column("rulebook_hash", text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("cost_krw", sa.BigInteger(), nullable=False),
        sa.Column("eligibility", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("review", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("objections", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("vote", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("selected", sa.Boolean(), nullable=True),
        sa.Column("projection_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
    )
    op.create_index(
        "ix_budget_projects_year_kind_status", "budget_projects", ["year", "kind", "status"]
    )
    op.create_index("ix_budget_projects_proposer_id", "budget_projects", ["proposer_id"])
    op.create_table(
        "project_objections",
        sa.Column("id", text(), nullable=False),
        sa.Column("project_id", text(), nullable=False),
        sa.Column("author_id", text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["budget_projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_project_objections_project_id", "project_objections", ["project_id"])


def downgrade() -> None:
    op.drop_table("project_objections")
    op.drop_table("budget_projects")
