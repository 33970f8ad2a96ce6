"""`states.uncounted_parent`: the ancestor a state is not counted under in `descendant_counts`.

Only unite targets are ever asked for their descendants' counts, yet every state was counted under
its direct parent too: a 10,000-way fan-out wrote 10,000 count rows in its fanning call and about
40,000 in its drain that nothing read. A new state now names the one entry of its `parents` whose node
no unite targets, and is not counted under it.

Runs in flight when this upgrade runs keep working unchanged: their states get NULL, which means
"counted under every entry of `parents`", exactly as before, and the states created after the upgrade
are counted under every unite target as before, so each target's counts stay exact. The counts left
under ancestors that are no unite target are never read; retention deletes them with their runs.

Revision ID: 0017_uncounted_parent
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_uncounted_parent"
down_revision = "0016_links_by_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no default: a plain ADD COLUMN, no table rebuild however many states there are.
    op.add_column("states", sa.Column("uncounted_parent", sa.String(24), nullable=True))


def downgrade() -> None:
    # A plain DROP COLUMN (SQLite 3.35+), not a batch copy of `states`: the copy would lose the
    # expression index `ix_states_claim_order` (see 0012's downgrade).
    op.drop_column("states", "uncounted_parent")
