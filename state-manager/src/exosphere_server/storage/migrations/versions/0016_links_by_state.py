"""An index of `state_ancestors` by state: a PostgreSQL claim finds the claimed states' ancestors by it.

The claim's count changes (`postgres.CLAIM_AND_COUNT`) join the claimed states to their `state_ancestors`
rows by `state_id`, which the primary key (`ancestor_id`, `state_id`) cannot serve: every claim read the
whole table, a cost that grew with every state ever kept. Retention deletes links by `state_id` too.

Revision ID: 0016_links_by_state
"""

from alembic import op

revision = "0016_links_by_state"
down_revision = "0015_child_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_state_ancestors_state", "state_ancestors", ["state_id"])


def downgrade() -> None:
    op.drop_index("ix_state_ancestors_state", table_name="state_ancestors")
