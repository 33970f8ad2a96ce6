"""Child graphs: a run started for a state whose node names a graph records that run and state.

Revision ID: 0015_child_runs
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_child_runs"
down_revision = "0014_payloads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable columns: a plain ADD COLUMN, no table rebuild however many runs there are.
    op.add_column("runs", sa.Column("parent_run_id", sa.String, nullable=True))
    op.add_column("runs", sa.Column("parent_state_id", sa.String(24), nullable=True))
    op.create_index("ix_runs_parent_run", "runs", ["parent_run_id"])
    op.create_index("ix_runs_parent_state", "runs", ["parent_state_id"])


def downgrade() -> None:
    op.drop_index("ix_runs_parent_state", table_name="runs")
    op.drop_index("ix_runs_parent_run", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("parent_state_id")
        batch.drop_column("parent_run_id")
