"""Indexes for vision events' filters: each reads the events it keeps along the field and
value (custom metadata, eventData) or the class and confidence, instead of a probe per event.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_event_metadata_text", "event_metadata", ["workspace_id", "field", "text_value"]),
    ("ix_event_metadata_number", "event_metadata", ["workspace_id", "field", "number_value"]),
    ("ix_event_data_fields_text", "event_data_fields", ["workspace_id", "field", "text_value"]),
    (
        "ix_event_data_fields_number",
        "event_data_fields",
        ["workspace_id", "field", "number_value"],
    ),
    ("ix_event_classes_class", "event_classes", ["workspace_id", "class_name", "confidence"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
