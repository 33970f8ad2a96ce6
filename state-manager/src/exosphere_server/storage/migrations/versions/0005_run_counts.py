"""Run counts kept up to date as states move (`run_counts`), instead of counted from the states on every read.

Existing runs get their rows from one aggregate over their states, in shard 0.

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
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


def downgrade() -> None:
    op.drop_table("run_counts")
