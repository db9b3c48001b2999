"""ballot mixing: rows of one ballot no longer linkable by transaction id or heap position

Two queues name the rows a cast wrote that the mixer (models/ballot_box.py) has not yet
rewritten: `ballot_unmixed_participations` (box, person) and `ballot_unmixed_choices` (box,
the token a receipt is derived from). Both are vacuumed eagerly, as are the ballot tables, so
that the dead tuples a mix leaves behind (which still carry the cast's transaction id) go soon.

The rows already cast are mixed once here: every participation and every choice is rewritten in
random order in this one transaction, so they all share its transaction id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_QUEUE_VACUUM = "autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 64"
_BALLOT_VACUUM = "autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_threshold = 1000"


def upgrade() -> None:
    op.create_table(
        "ballot_unmixed_participations",
        sa.Column("box_id", sa.String(), nullable=False),
        sa.Column("person_id", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("box_id", "person_id"),
    )
    op.create_table(
        "ballot_unmixed_choices",
        sa.Column("box_id", sa.String(), nullable=False),
        sa.Column("token", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("box_id", "token"),
    )
    for table in ("ballot_unmixed_participations", "ballot_unmixed_choices"):
        op.execute(f"ALTER TABLE {table} SET ({_QUEUE_VACUUM})")
    for table, columns in (
        ("ballot_participations", "box_id, person_id"),
        ("ballot_choices", "box_id, receipt, option, voter_group"),
    ):
        op.execute(f"ALTER TABLE {table} SET ({_BALLOT_VACUUM})")
        op.execute(
            f"CREATE TEMPORARY TABLE mixed AS SELECT {columns} FROM {table} ORDER BY random()"
        )
        op.execute(f"DELETE FROM {table}")
        op.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM mixed")
        op.execute("DROP TABLE mixed")


def downgrade() -> None:
    op.drop_table("ballot_unmixed_choices")
    op.drop_table("ballot_unmixed_participations")
    for table in ("ballot_participations", "ballot_choices"):
        op.execute(
            f"ALTER TABLE {table} RESET "
            "(autovacuum_vacuum_scale_factor, autovacuum_vacuum_threshold)"
        )
