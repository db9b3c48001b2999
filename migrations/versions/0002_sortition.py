"""sortition pools, pool members and commit-reveal draws

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "sortition_pools",
        sa.Column("name", String(), nullable=False),
        sa.Column("created_by", String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "sortition_pool_members",
        sa.Column("pool", String(), nullable=False),
        sa.Column("person_id", String(), nullable=False),
        sa.Column("sex", String(), nullable=False),
        sa.Column("birth_year", sa.Integer(), nullable=False),
        sa.Column("district", String(), nullable=False),
        sa.Column("budget_school", sa.Boolean(), nullable=False),
        sa.Column("source", String(), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["pool"], ["sortition_pools.name"]),
        sa.PrimaryKeyConstraint("pool", "person_id"),
    )
    op.create_table(
        "sortition_draws",
        sa.Column("id", String(), nullable=False),
        sa.Column("purpose", String(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("strata", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("groups", sa.Integer(), nullable=True),
        sa.Column("filter", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("pool", String(), nullable=False),
        sa.Column("rulebook", String(), nullable=False),
        sa.Column("rulebook_hash", String(), nullable=False),
        sa.Column("reference_year", sa.Integer(), nullable=False),
        sa.Column("age_bands", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("population", String(), nullable=False),
        sa.Column("population_digest", String(), nullable=False),
        sa.Column("seed_commitment", String(), nullable=False),
        sa.Column("snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("snapshot_digest", String(), nullable=False),
        sa.Column("counts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("status", String(), nullable=False),
        sa.Column("seed", sa.Text(), nullable=True),
        sa.Column("members", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("member_groups", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("members_digest", String(), nullable=True),
        sa.Column("created_by", String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["pool"], ["sortition_pools.name"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_sortition_draws_pool"), "sortition_draws", ["pool"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_sortition_draws_pool"), table_name="sortition_draws")
    op.drop_table("sortition_draws")
    op.drop_table("sortition_pool_members")
    op.drop_table("sortition_pools")
