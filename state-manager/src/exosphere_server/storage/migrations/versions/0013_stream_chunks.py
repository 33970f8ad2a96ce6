"""Live streams out of running nodes: the chunks each attempt streamed (`BaseNode.stream`).

Revision ID: 0013_stream_chunks
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_stream_chunks"
down_revision = "0012_limits"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stream_chunks",
        sa.Column("state_id", sa.String, primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("position", sa.Integer, primary_key=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("written_at", sa.BigInteger, nullable=False),
        sqlite_with_rowid=False,  # the primary key is the table: half the pages per write
    )


def downgrade() -> None:
    op.drop_table("stream_chunks")
