"""Named limits and their buckets, the concurrency holds of claimed states, usage corrections, the
nodes that have limits, and each state's limit charges.

Revision ID: 0012_limits
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_limits"
down_revision = "0011_priority_budget"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN of a nullable column: no table rebuild, however many states there are.
    op.add_column("states", sa.Column("limits", sa.JSON(none_as_null=True), nullable=True))
    op.create_table(
        "limits",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("concurrency", sa.Integer, nullable=True),
        sa.Column("requests_per_minute", sa.Integer, nullable=True),
        sa.Column("tokens_per_minute", sa.Integer, nullable=True),
        sa.Column("paused_until", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "limit_buckets",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("requests", sa.Float, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.BigInteger, nullable=False),
        sa.Column("paused_until", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "limit_holds",
        sa.Column("state_id", sa.String(24), primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("namespace", sa.String, nullable=False),
    )
    op.create_index("ix_limit_holds_bucket", "limit_holds", ["namespace", "name", "key"])
    op.create_table(
        "limit_corrections",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("key", sa.String, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
    )
    op.create_index("ix_limit_corrections_bucket", "limit_corrections", ["namespace", "name", "key"])
    op.create_table(
        "limited_nodes",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("node_name", sa.String, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("limited_nodes")
    op.drop_index("ix_limit_corrections_bucket", table_name="limit_corrections")
    op.drop_table("limit_corrections")
    op.drop_index("ix_limit_holds_bucket", table_name="limit_holds")
    op.drop_table("limit_holds")
    op.drop_table("limit_buckets")
    op.drop_table("limits")
    # A plain DROP COLUMN (SQLite 3.35+), not a batch copy of `states`: the copy would lose the
    # expression index `ix_states_claim_order` that 0011's downgrade drops next.
    op.drop_column("states", "limits")
