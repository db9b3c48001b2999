"""ballots from other channels: the channel of each choice row, and one row per channel batch

Seoul's votes come online, through mVoting, on-site e-voting and paper (issue 9, api.md
`POST /v1/budget-cycles/{year}/ballot-batches`). A choice row says which channel brought its
ballot, so a box can be recounted per channel; a participation row does not (the channel would
join a voter to their choices). `ballot_batches` records what each batch a channel submitted
held: received, accepted and the refused lines with their reasons, and the digest of its
content. Existing rows are online ballots.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ballot_choices",
        sa.Column("channel", sa.String(), nullable=False, server_default="online"),
    )
    op.create_table(
        "ballot_batches",
        sa.Column("id", sa.String(), primary_key=True),
        sa.Column("box_id", sa.String(), sa.ForeignKey("ballot_boxes.id"), nullable=False),
        sa.Column("channel", sa.String(), nullable=False),
        sa.Column("submitted_by", sa.String(), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("format", sa.String(), nullable=False),
        sa.Column("content_digest", sa.String(), nullable=False),
        sa.Column("received", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("refused", JSONB(), nullable=False),
    )
    op.create_index("ix_ballot_batches_box_channel", "ballot_batches", ["box_id", "channel"])


def downgrade() -> None:
    op.drop_index("ix_ballot_batches_box_channel", table_name="ballot_batches")
    op.drop_table("ballot_batches")
    op.drop_column("ballot_choices", "channel")
