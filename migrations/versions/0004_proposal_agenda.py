"""proposals.agenda (agenda selection of linked proposals); forums.recommendation

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "proposals",
        sa.Column("agenda", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    op.add_column("forums", sa.Column("recommendation", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("forums", "recommendation")
    op.drop_column("proposals", "agenda")
