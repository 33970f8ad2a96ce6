"""Run control: cancelled runs, run deadlines, node time-outs, and when each node was last asked for.

Revision ID: 0004_run_control
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_run_control"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs of nullable columns: no table rebuild, however many states there are.
    op.add_column("states", sa.Column("timeout_ms", sa.BigInteger, nullable=True))
    for table in ("graphs", "graph_versions"):
        op.add_column(table, sa.Column("timeout_seconds", sa.Float, nullable=True))
        op.add_column(table, sa.Column("deadline_seconds", sa.Float, nullable=True))
    op.create_table(
        "run_cancellations",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("cancelled_states", sa.Integer, nullable=False),
        sa.Column("cancelled_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "run_deadlines",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("deadline_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_run_deadlines_due", "run_deadlines", ["deadline_at"])
    op.create_table(
        "node_polls",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("node_name", sa.String, primary_key=True),
        sa.Column("polled_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("node_polls", "run_deadlines", "run_cancellations"):
        op.drop_table(table)
    for table in ("graph_versions", "graphs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("deadline_seconds")
            batch.drop_column("timeout_seconds")
    with op.batch_alter_table("states") as batch:
        batch.drop_column("timeout_ms")
