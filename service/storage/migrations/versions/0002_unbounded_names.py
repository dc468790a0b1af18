"""Names users choose are unbounded text: graph and node names, node-run ids, owner ids.

They were VARCHAR(200): Postgres refused a longer workflow name, node name, engine node-run id
(which grows with the depth of a ``Send`` chain) or ``GRAPHFLOW_OWNER_ID`` (hostnames run to
253 characters) in the middle of a run. SQLite never enforced the lengths, so it is left as is.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("runs", "graph"),
    ("runs", "owner_id"),
    ("node_runs", "activation_id"),
    ("node_runs", "node"),
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:  # VARCHAR -> TEXT is binary compatible: no table rewrite
        op.alter_column(table, column, type_=sa.Text(), existing_type=sa.String(200))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column in _COLUMNS:
        op.alter_column(table, column, type_=sa.String(200), existing_type=sa.Text())
