"""Run change feed: `states.revision`, bumped by every write that moves a state.

A run's version (the id of its change events, `GET .../run/{run_id}/events`) is the sum of its
states' revisions: it survives restarts and is the same on every replica.

Revision ID: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing states count once each, as new ones do: versions of old runs start at their state count.
    # A plain ADD COLUMN on both dialects: no table rebuild, however many states there are.
    op.add_column("states", sa.Column("revision", sa.Integer, nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("states") as batch:
        batch.drop_column("revision")
