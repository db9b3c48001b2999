"""budget cycles: fields, bodies, decisions and linked forums; body members; Square opinions

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    jsonb = postgresql.JSONB(astext_type=sa.Text())
    for column, default in (
        ("fields", "[]"),
        ("bodies", "{}"),
        ("decisions", "{}"),
        ("linked_forums", "[]"),
    ):
        op.add_column(
            "budget_cycles",
            sa.Column(column, jsonb, nullable=False, server_default=sa.text(f"'{default}'")),
        )
    op.create_table(
        "budget_body_members",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("body", text(), nullable=False),
        sa.Column("person_id", text(), nullable=False),
        sa.Column("origin", text(), nullable=False),
        sa.PrimaryKeyConstraint("year", "body", "person_id"),
    )
    op.create_table(
        "project_opinions",
        sa.Column("id", text(), nullable=False),
        sa.Column("project_id", text(), nullable=False),
        sa.Column("author_id", text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["project_id"], ["budget_projects.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_project_opinions_project_id", "project_opinions", ["project_id"])


def downgrade() -> None:
    op.drop_table("project_opinions")
    op.drop_table("budget_body_members")
    for column in ("linked_forums", "decisions", "bodies", "fields"):
        op.drop_column("budget_cycles", column)
