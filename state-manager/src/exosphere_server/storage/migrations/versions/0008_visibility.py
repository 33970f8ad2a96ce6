"""Run visibility: idempotency keys of triggers; where and how each attempt ran.

`trigger_keys` holds each idempotency key of a trigger until it expires: its primary key is what
makes two concurrent triggers with one key give one run, on every replica. States gain the runtime
that claimed them (name and instance) and the traceback of their error.

Revision ID: 0008_visibility
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_visibility"
down_revision = "0007_kept_counts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "trigger_keys",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("graph_name", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_trigger_keys_expiry", "trigger_keys", ["expires_at"])
    # Plain ADD COLUMNs of nullable columns: no table rebuild, however many states there are.
    op.add_column("states", sa.Column("runtime_name", sa.String, nullable=True))
    op.add_column("states", sa.Column("runtime_instance", sa.String, nullable=True))
    op.add_column("states", sa.Column("traceback", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("states") as batch:
        batch.drop_column("traceback")
        batch.drop_column("runtime_instance")
        batch.drop_column("runtime_name")
    op.drop_index("ix_trigger_keys_expiry", "trigger_keys")
    op.drop_table("trigger_keys")
