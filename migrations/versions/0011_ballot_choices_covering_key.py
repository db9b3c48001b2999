"""the primary key of ballot_choices carries the voter group: a box counts in one index-only scan

`count_box` reads a box's choice rows in the digest's order (receipt, option) off the primary
key; with the voter group in the index (INCLUDE, not part of the key: the key and what it
refuses are unchanged) every column a digest line and a count need is there, so the count
needs neither a sort nor a visit to the heap. Still one index on the table, so a cast writes
no more index entries than before.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-20
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE ballot_choices DROP CONSTRAINT ballot_choices_pkey,"
        " ADD CONSTRAINT ballot_choices_pkey PRIMARY KEY (box_id, receipt, option)"
        " INCLUDE (voter_group)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE ballot_choices DROP CONSTRAINT ballot_choices_pkey,"
        " ADD CONSTRAINT ballot_choices_pkey PRIMARY KEY (box_id, receipt, option)"
    )
