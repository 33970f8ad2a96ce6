"""Initial schema: graphs, versions, registered nodes, runs, states, ancestors, cron schedules.

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

LIVE = "status = 'CREATED'"
HELD = "status = 'QUEUED'"


def upgrade() -> None:
    op.create_table(
        "graphs",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("secrets", sa.JSON, nullable=False),
        sa.Column("retry_policy", sa.JSON, nullable=False),
        sa.Column("store_config", sa.JSON, nullable=False),
        sa.Column("triggers", sa.JSON, nullable=False),
        sa.Column("validation_status", sa.String, nullable=False),
        sa.Column("validation_errors", sa.JSON, nullable=False),
        sa.Column("validation_warnings", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "graph_versions",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("nodes", sa.JSON, nullable=False),
        sa.Column("retry_policy", sa.JSON, nullable=False),
        sa.Column("store_config", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "registered_nodes",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("runtime_name", sa.String, nullable=False),
        sa.Column("inputs_schema", sa.JSON, nullable=False),
        sa.Column("outputs_schema", sa.JSON, nullable=False),
        sa.Column("secrets", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String, primary_key=True),
        sa.Column("namespace", sa.String, nullable=False),
        sa.Column("graph_name", sa.String, nullable=False),
        sa.Column("graph_version", sa.Integer, nullable=False),
        sa.Column("store", sa.JSON, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_runs_namespace_created", "runs", ["namespace", "created_at"])
    op.create_table(
        "states",
        sa.Column("id", sa.String(24), primary_key=True),
        sa.Column("namespace", sa.String, nullable=False),
        sa.Column("node_name", sa.String, nullable=False),
        sa.Column("identifier", sa.String, nullable=False),
        sa.Column("graph_name", sa.String, nullable=False),
        sa.Column("run_id", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("inputs", sa.JSON, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("parents", sa.JSON, nullable=False),
        sa.Column("does_unites", sa.Boolean, nullable=False),
        sa.Column("fingerprint", sa.String, nullable=True, unique=True),
        sa.Column("enqueue_after", sa.BigInteger, nullable=False),
        sa.Column("retry_count", sa.Integer, nullable=False),
        sa.Column("fanout_id", sa.String, nullable=False),
        sa.Column("manual_retry_fanout_id", sa.String, nullable=False),
        sa.Column("lease_id", sa.String, nullable=True),
        sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
        sa.Column("lease_expired", sa.Boolean, nullable=False),
        sa.Column("claims", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("started_at", sa.BigInteger, nullable=True),
        sa.Column("finished_at", sa.BigInteger, nullable=True),
        sa.UniqueConstraint(
            "node_name",
            "namespace",
            "graph_name",
            "identifier",
            "run_id",
            "retry_count",
            "fanout_id",
            name="uq_states_attempt",
        ),
    )
    op.create_index(
        "ix_states_ready",
        "states",
        ["namespace", "node_name", "enqueue_after"],
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_index(
        "ix_states_due", "states", ["enqueue_after"], sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE)
    )
    op.create_index(
        "ix_states_lease", "states", ["lease_expires_at"], sqlite_where=sa.text(HELD), postgresql_where=sa.text(HELD)
    )
    op.create_index("ix_states_run", "states", ["run_id", "created_at"])
    op.create_table(
        "state_ancestors",
        sa.Column("ancestor_id", sa.String(24), primary_key=True),
        sa.Column("state_id", sa.String(24), primary_key=True),
    )
    op.create_table(
        "cron_schedules",
        sa.Column("namespace", sa.String, primary_key=True),
        sa.Column("graph_name", sa.String, primary_key=True),
        sa.Column("expression", sa.String, primary_key=True),
        sa.Column("trigger", sa.JSON, nullable=False),
        sa.Column("next_fire_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_cron_next", "cron_schedules", ["next_fire_at"])


def downgrade() -> None:
    for table in (
        "cron_schedules",
        "state_ancestors",
        "states",
        "runs",
        "registered_nodes",
        "graph_versions",
        "graphs",
    ):
        op.drop_table(table)
