"""Waits for signals (`WaitForSignal`): what a WAITING state waits for and until when, the payload a
woken state is claimed with, and the signals sent to runs.

Revision ID: 0008_signal_waits
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_signal_waits"
down_revision = "0008_visibility"
branch_labels = None
depends_on = None

WAITING = "status = 'WAITING'"


def upgrade() -> None:
    # Plain ADD COLUMNs of nullable columns: no table rebuild, however many states there are; the
    # index is partial, so it holds waiting states only (none yet).
    op.add_column("states", sa.Column("waiting_for", sa.String, nullable=True))
    op.add_column("states", sa.Column("wait_timeout_at", sa.BigInteger, nullable=True))
    op.add_column("states", sa.Column("signal", sa.JSON, nullable=True))
    op.create_index(
        "ix_states_wait_timeout",
        "states",
        ["wait_timeout_at"],
        sqlite_where=sa.text(WAITING),
        postgresql_where=sa.text(WAITING),
    )
    op.create_table(
        "run_signals",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("sent_at", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_signals")
    op.drop_index("ix_states_wait_timeout", table_name="states")
    with op.batch_alter_table("states") as batch:
        batch.drop_column("signal")
        batch.drop_column("wait_timeout_at")
        batch.drop_column("waiting_for")
