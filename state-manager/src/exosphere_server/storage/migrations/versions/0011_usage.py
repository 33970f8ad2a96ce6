"""Usage reported with results: per attempt on `states`, added up per run and node in `run_counts`.

Revision ID: 0011_usage
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_usage"
down_revision = "0009_signal_waits"
branch_labels = None
depends_on = None

USAGE_TOTALS = ("input_tokens", "output_tokens", "requests")


def upgrade() -> None:
    # ADD COLUMN with a constant default: no table rebuild on either backend, however many rows.
    op.add_column("states", sa.Column("usage", sa.JSON, nullable=True))
    for name in USAGE_TOTALS:
        op.add_column("run_counts", sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))
    op.add_column("run_counts", sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("run_counts") as batch:
        batch.drop_column("cost_usd")
        for name in reversed(USAGE_TOTALS):
            batch.drop_column(name)
    with op.batch_alter_table("states") as batch:
        batch.drop_column("usage")
