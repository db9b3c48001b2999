"""the districts' applications of February (2월 사업 접수)

A district applies for the plan type and, apart, for strategic projects (구단위계획형 사업 신청과
전략사업 신청을 구분하여 접수, 003 1-2-④); the strategic districts of March are chosen among
those that applied for them. One application per district and cycle.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "district_applications",
        sa.Column("year", sa.Integer(), sa.ForeignKey("budget_cycles.year"), primary_key=True),
        sa.Column("district", sa.String(), primary_key=True),
        sa.Column("strategic", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("applied_by", sa.String(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("district_applications")
