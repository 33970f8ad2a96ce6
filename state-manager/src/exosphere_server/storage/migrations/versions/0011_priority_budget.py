"""Priorities and budgets: a run's priority (kept on its states too, for the claim's index) and budget,
and a graph's defaults for both.

Revision ID: 0011_priority_budget
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_priority_budget"
down_revision = "0010_usage"
branch_labels = None
depends_on = None

READY = "status = 'CREATED'"
CLAIM_ORDER = "enqueue_after - priority * 1000"  # schema.CLAIM_ORDER as this revision wrote it


def upgrade() -> None:
    # ADD COLUMN with a constant default: no table rebuild on either backend, however many rows.
    for table in ("graphs", "graph_versions"):
        op.add_column(table, sa.Column("priority", sa.Integer, nullable=True))
        op.add_column(table, sa.Column("budget", sa.JSON, nullable=True))
    op.add_column("runs", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("budget", sa.JSON, nullable=True))
    op.add_column("states", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    # Replaces the ready index by (namespace, node, ready time): claims now order by the claim order,
    # and a second index of the same rows would only slow every write. Partial: only ready states, so
    # a million finished ones cost a claim nothing.
    op.drop_index("ix_states_ready", table_name="states")
    op.create_index(
        "ix_states_claim_order",
        "states",
        ["namespace", "node_name", sa.text(f"({CLAIM_ORDER})")],
        sqlite_where=sa.text(READY),
        postgresql_where=sa.text(READY),
    )


def downgrade() -> None:
    op.drop_index("ix_states_claim_order", table_name="states")
    op.create_index(
        "ix_states_ready",
        "states",
        ["namespace", "node_name", "enqueue_after"],
        sqlite_where=sa.text(READY),
        postgresql_where=sa.text(READY),
    )
    with op.batch_alter_table("states") as batch:
        batch.drop_column("priority")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("budget")
        batch.drop_column("priority")
    for table in ("graph_versions", "graphs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("budget")
            batch.drop_column("priority")
