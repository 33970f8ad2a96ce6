"""Counts kept up to date as states move, instead of counted from the states on every read: per run
(`run_counts`) and per unite target's descendants (`descendant_counts`).

Existing states are counted once here, by one aggregate each, in shard 0.

Revision ID: 0007_kept_counts
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_kept_counts"
down_revision = "0006_parents_not_ancestry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_counts",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("identifier", sa.String, primary_key=True),
        sa.Column("status", sa.String, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("node_name", sa.String, nullable=False),
        sa.Column("states", sa.Integer, nullable=False),
        sa.Column("revisions", sa.Integer, nullable=False),
        sa.Column("first_created", sa.BigInteger, nullable=False),
    )
    op.execute(
        "INSERT INTO run_counts (run_id, identifier, status, shard, node_name, states, revisions, first_created) "
        "SELECT run_id, identifier, status, 0, MIN(node_name), COUNT(*), SUM(revision), MIN(created_at) "
        "FROM states GROUP BY run_id, identifier, status"
    )
    op.create_table(
        "descendant_counts",
        sa.Column("ancestor_id", sa.String(24), primary_key=True),
        sa.Column("status", sa.String, primary_key=True),
        sa.Column("shard", sa.Integer, primary_key=True),
        sa.Column("states", sa.Integer, nullable=False),
    )
    op.execute(
        "INSERT INTO descendant_counts (ancestor_id, status, shard, states) "
        "SELECT a.ancestor_id, s.status, 0, COUNT(*) FROM state_ancestors a JOIN states s ON s.id = a.state_id "
        "GROUP BY a.ancestor_id, s.status"
    )


def downgrade() -> None:
    op.drop_table("descendant_counts")
    op.drop_table("run_counts")
