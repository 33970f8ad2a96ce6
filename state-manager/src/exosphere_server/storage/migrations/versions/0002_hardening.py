"""Hardening: graph-to-node references, server settings (the secrets key check), revoked sessions.

Revision ID: 0002
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "graph_node_refs",
        sa.Column("node_namespace", sa.String, primary_key=True),
        sa.Column("node_name", sa.String, primary_key=True),
        sa.Column("graph_namespace", sa.String, primary_key=True),
        sa.Column("graph_name", sa.String, primary_key=True),
    )
    op.create_table(
        "server_settings",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.String, nullable=False),
    )
    op.create_table(
        "revoked_sessions",
        sa.Column("token_id", sa.String, primary_key=True),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_revoked_sessions_expiry", "revoked_sessions", ["expires_at"])
    _backfill_graph_node_refs()


def _backfill_graph_node_refs() -> None:
    conn = op.get_bind()
    refs = set()
    for namespace, name, nodes in conn.execute(sa.text("SELECT namespace, name, nodes FROM graphs")):
        for node in json.loads(nodes) if isinstance(nodes, str) else nodes:
            refs.add((node["namespace"], node["node_name"], namespace, name))
    if refs:
        table = sa.table(
            "graph_node_refs",
            sa.column("node_namespace"),
            sa.column("node_name"),
            sa.column("graph_namespace"),
            sa.column("graph_name"),
        )
        keys = ("node_namespace", "node_name", "graph_namespace", "graph_name")
        op.bulk_insert(table, [dict(zip(keys, ref, strict=True)) for ref in sorted(refs)])


def downgrade() -> None:
    for table in ("revoked_sessions", "server_settings", "graph_node_refs"):
        op.drop_table(table)
