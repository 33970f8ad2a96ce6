"""States keep their parent and the ancestor outputs still to be read, not their whole ancestry.

`parent_id` is the state a state was made from; `carried` holds the ancestor output fields that
placeholders further on will read. New states keep in `parents` only the unite targets and their
direct parent, so a state's row no longer grows with the run's depth.

Existing rows are left as they are and keep working: a state without `parent_id` but with
`parents` holds its whole ancestry, which is what the engine reads for them (children of such a
state are built from its ancestors' rows, as before; its full lineage is its `parents`).

Revision ID: 0006_parents_not_ancestry
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_parents_not_ancestry"
down_revision = "0005_api_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMNs on both dialects: no table rebuild, however many states there are.
    op.add_column("states", sa.Column("parent_id", sa.String(24), nullable=True))
    op.add_column("states", sa.Column("carried", sa.JSON, nullable=False, server_default=sa.text("'{}'")))


def downgrade() -> None:
    with op.batch_alter_table("states") as batch:
        batch.drop_column("carried")
        batch.drop_column("parent_id")
