"""Running for months: graph versions, metadata and tags (with their search tables), deadlines,
and the indexes of filtered lists, retention and deadline sweeps.

The new status ``timed_out`` fits the status column.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.storage.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_runs_graph_created_at_id", ["graph", "created_at", "id"]),
    ("ix_runs_status_created_at_id", ["status", "created_at", "id"]),
    ("ix_runs_finished_at", ["finished_at"]),
    ("ix_runs_deadline_at", ["deadline_at"]),
    ("ix_runs_queue_deadline_at", ["queue_deadline_at"]),
)


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("graph_version", sa.Text(), nullable=True))
        batch.add_column(sa.Column("run_metadata", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("timeout_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("queue_timeout_seconds", sa.Float(), nullable=True))
        batch.add_column(sa.Column("deadline_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("queue_deadline_at", UTCDateTime(), nullable=True))
    for name, columns in _INDEXES:
        op.create_index(name, "runs", columns)
    op.create_table(
        "run_tags",
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("tag", sa.String(64), primary_key=True),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag", "run_id"])
    op.create_table(
        "run_metadata_values",
        sa.Column(
            "run_id", sa.String(36), sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("key", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_index(
        "ix_run_metadata_values_key_value", "run_metadata_values", ["key", "value", "run_id"]
    )


def downgrade() -> None:
    op.drop_table("run_metadata_values")
    op.drop_table("run_tags")
    for name, _ in _INDEXES:
        op.drop_index(name, "runs")
    with op.batch_alter_table("runs") as batch:
        for column in (
            "queue_deadline_at",
            "deadline_at",
            "queue_timeout_seconds",
            "timeout_seconds",
            "tags",
            "run_metadata",
            "graph_version",
        ):
            batch.drop_column(column)
