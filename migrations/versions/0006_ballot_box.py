"""one ballot box for every vote: boxes with options, participations apart from choices

The proposal vote's `ballot_participations` / `ballot_choices` become the rows of boxes named
`proposal:<id>`; a choice row now names its option and the voter's group (for weights), and a
ballot may approve several options (one row per option, one receipt per ballot).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ballot_boxes",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("case_id", sa.String(), nullable=False),
        sa.Column("options", postgresql.JSONB(), nullable=False),
        sa.Column("groups", postgresql.JSONB(), nullable=False),
        sa.Column("max_choices", sa.Integer(), nullable=True),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_ballot_boxes_case_id", "ballot_boxes", ["case_id"])
    # every proposal that has ballots or is voting gets its box
    op.execute(
        """
        INSERT INTO ballot_boxes (id, kind, case_id, options, groups, max_choices, opened_at,
                                  closed_at)
        SELECT 'proposal:' || p.id, 'proposal', p.id, '["yes", "no"]', '["general",
               "budget_school"]', 1, coalesce(p.updated_at, p.created_at), p.tallied_at
          FROM proposals p
         WHERE p.status = 'voting' OR p.tallied_at IS NOT NULL
            OR EXISTS (SELECT 1 FROM ballot_participations b WHERE b.proposal_id = p.id)
        """
    )
    op.add_column("ballot_participations", sa.Column("box_id", sa.String(), nullable=True))
    op.execute("UPDATE ballot_participations SET box_id = 'proposal:' || proposal_id")
    op.drop_index("ix_ballot_participations_person_id", table_name="ballot_participations")
    op.drop_constraint("ballot_participations_pkey", "ballot_participations", type_="primary")
    op.drop_column("ballot_participations", "proposal_id")
    op.alter_column("ballot_participations", "box_id", nullable=False)
    op.create_primary_key(
        "ballot_participations_pkey", "ballot_participations", ["box_id", "person_id"]
    )
    op.create_index("ix_ballot_participations_person_id", "ballot_participations", ["person_id"])
    op.create_foreign_key(
        "ballot_participations_box_id_fkey",
        "ballot_participations",
        "ballot_boxes",
        ["box_id"],
        ["id"],
    )

    op.add_column("ballot_choices", sa.Column("box_id", sa.String(), nullable=True))
    op.add_column(
        "ballot_choices",
        sa.Column("voter_group", sa.String(), nullable=False, server_default="general"),
    )
    op.execute("UPDATE ballot_choices SET box_id = 'proposal:' || proposal_id")
    op.alter_column("ballot_choices", "voter_group", server_default=None)
    op.alter_column("ballot_choices", "choice", new_column_name="option")
    op.drop_index("ix_ballot_choices_proposal_id", table_name="ballot_choices")
    op.drop_constraint("ballot_choices_pkey", "ballot_choices", type_="primary")
    op.drop_column("ballot_choices", "proposal_id")
    op.alter_column("ballot_choices", "box_id", nullable=False)
    op.create_primary_key("ballot_choices_pkey", "ballot_choices", ["box_id", "receipt", "option"])
    op.create_foreign_key(
        "ballot_choices_box_id_fkey", "ballot_choices", "ballot_boxes", ["box_id"], ["id"]
    )


def downgrade() -> None:
    raise NotImplementedError("the ballot box is not split back into per-proposal tables")
