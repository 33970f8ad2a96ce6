"""Scoped API keys (role and namespace, stored as SHA-256) and the audit log of admin and operator actions.

Revision ID: 0005_api_keys
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_api_keys"
down_revision = "0004_run_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("namespace", sa.String, nullable=True),
        sa.Column("secret_sha256", sa.String, nullable=False, unique=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("revoked_at", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String, nullable=False),
        sa.Column("key_name", sa.String, nullable=False),
        sa.Column("role", sa.String, nullable=False),
        sa.Column("action", sa.String, nullable=False),
        sa.Column("namespace", sa.String, nullable=True),
        sa.Column("target", sa.String, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("api_keys")
