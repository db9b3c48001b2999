"""a selected budget project's execution in Y+1: its department, reports and deadlines

The project workflow goes on from the selection to the execution year(s) (process.md §6:
every selected project is monitored): `budget_projects.execution` is its projection (the
executing department, progress, the reports counted, the next and the final report's due
dates, overdue, completion, a governance project's execution council) and `evaluation` a governance
project's evaluation at the December results meeting. Null for a project not selected, or
selected before this.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("budget_projects", sa.Column("execution", JSONB(), nullable=True))
    op.add_column("budget_projects", sa.Column("evaluation", JSONB(), nullable=True))


def downgrade() -> None:
    op.drop_column("budget_projects", "evaluation")
    op.drop_column("budget_projects", "execution")
