"""Large payloads: input and output values above the inline threshold, kept apart from the state rows
(PostgreSQL keeps them in this table; SQLite as files beside the database).

Revision ID: 0014_payloads
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_payloads"
down_revision = "0013_stream_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payloads",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Out of line without compression: a 10 MB write is not first run through pglz.
        op.execute("ALTER TABLE payloads ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("payloads")
