"""district and neighbourhood plans (process.md §8, §6a, 003 1-2-④⑤): the strategic districts
of a cycle, the district plans (each its workflow's projection), the districts' neighbourhood
ceilings and the neighbourhoods' agenda sets

One strategic selection per cycle, one plan per district and cycle, one ceiling per district
and cycle, one agenda set per neighbourhood and cycle. `submitted_by` is never shown in public.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    text = sqlmodel.sql.sqltypes.AutoString
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "district_strategic_selections",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("districts", postgresql.JSONB(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("selected_at", tz, nullable=False),
        sa.ForeignKeyConstraint(["year"], ["budget_cycles.year"]),
        sa.PrimaryKeyConstraint("year"),
    )
    op.create_table(
        "district_plans",
        sa.Column("id", text(), nullable=False),
        sa.Column("workflow_id", text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("district", text(), nullable=False),
        sa.Column("strategic", sa.Boolean(), nullable=False),
        sa.Column("strategy", sa.Text(), nullable=True),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.Column("submitted_cost_krw", sa.BigInteger(), nullable=False),
        sa.Column("ceiling_krw", sa.BigInteger(), nullable=False),
        sa.Column("submitted_by", text(), nullable=False),
        sa.Column("rulebook", text(), nullable=False),
        sa.Column("rulebook_hash", text(), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("cost_krw", sa.BigInteger(), nullable=False),
        sa.Column("negotiations", postgresql.JSONB(), nullable=False),
        sa.Column("decision", postgresql.JSONB(), nullable=True),
        sa.Column("agreement", postgresql.JSONB(), nullable=True),
        sa.Column("projection_seq", sa.Integer(), nullable=False),
        sa.Column("updated_at", tz, nullable=True),
        sa.ForeignKeyConstraint(["year"], ["budget_cycles.year"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("workflow_id"),
        sa.UniqueConstraint("year", "district", name="uq_district_plans_year_district"),
    )
    op.create_table(
        "neighbourhood_ceilings",
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("district", text(), nullable=False),
        sa.Column("planning_neighbourhoods", sa.Integer(), nullable=False),
        sa.Column("autonomous_neighbourhoods", sa.Integer(), nullable=False),
        sa.Column("ceiling_krw", sa.BigInteger(), nullable=False),
        sa.Column("announced_at", tz, nullable=False),
        sa.ForeignKeyConstraint(["year"], ["budget_cycles.year"]),
        sa.PrimaryKeyConstraint("year", "district"),
    )
    op.create_table(
        "neighbourhood_agendas",
        sa.Column("id", text(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("district", text(), nullable=False),
        sa.Column("neighbourhood", text(), nullable=False),
        sa.Column("agendas", postgresql.JSONB(), nullable=False),
        sa.Column("assembly_minutes", sa.Text(), nullable=False),
        sa.Column("cost_krw", sa.BigInteger(), nullable=False),
        sa.Column("submitted_by", text(), nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("status", text(), nullable=False),
        sa.Column("selected_krw", sa.BigInteger(), nullable=False),
        sa.Column("review_note", sa.Text(), nullable=True),
        sa.Column("reviewed_at", tz, nullable=True),
        sa.ForeignKeyConstraint(["year"], ["budget_cycles.year"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "year", "district", "neighbourhood", name="uq_neighbourhood_agendas_neighbourhood"
        ),
    )
    op.create_index(
        "ix_neighbourhood_agendas_year_district", "neighbourhood_agendas", ["year", "district"]
    )


def downgrade() -> None:
    op.drop_table("neighbourhood_agendas")
    op.drop_table("neighbourhood_ceilings")
    op.drop_table("district_plans")
    op.drop_table("district_strategic_selections")
