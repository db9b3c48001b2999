"""notification delivery: who is reached where, and how each outbox row's delivery went

`notification_contacts` holds, per recipient (`person:<sub>`, `department:<dept>`), an e-mail
address, a phone number, a webhook URL with its signing secret (AES-GCM sealed with
MINJU_NOTIFY_SECRET_KEY, never in clear: activities/channels.py) and the channels to use, in
order of preference. `notifications` gains its delivery state: status, attempts, last error,
the channel that delivered it, and the group a row was expanded from.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_contacts",
        sa.Column("recipient", sa.String(), primary_key=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret", sa.LargeBinary(), nullable=True),
        sa.Column("channels", JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("updated_by", sa.String(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.add_column(
        "notifications",
        sa.Column("status", sa.String(), nullable=False, server_default="pending"),
    )
    op.add_column(
        "notifications",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("notifications", sa.Column("last_error", sa.Text(), nullable=True))
    op.add_column("notifications", sa.Column("channel", sa.String(), nullable=True))
    op.add_column("notifications", sa.Column("expanded_from", sa.String(), nullable=True))
    # Rows written before delivery existed are history, not a backlog to send now.
    op.execute(
        "UPDATE notifications SET status = 'skipped', "
        "last_error = 'written before delivery existed (migration 0018)'"
    )


def downgrade() -> None:
    for column in ("expanded_from", "channel", "last_error", "attempts", "status"):
        op.drop_column("notifications", column)
    op.drop_table("notification_contacts")
