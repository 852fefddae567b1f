"""An index of devices by when they were last seen: the fleet's list pages the offline ones
first, most recently lost first, without sorting every device of the workspace.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_devices_workspace_id_last_seen", "devices", ["workspace_id", "last_seen"])


def downgrade() -> None:
    op.drop_index("ix_devices_workspace_id_last_seen", table_name="devices")
