"""The tables, as SQLAlchemy Core objects. Migrations create them; the store queries them.

Every large table carries `workspace_id` and its keys and indexes start with
it, so a query is always bounded by workspace and time, and the schema can be
distributed by workspace (Citus) without a rewrite.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from visionwatch.db.types import BigId, Timestamp
from visionwatch.histograms import CONFIDENCE_BINS
from visionwatch.timeutil import RESOLUTION_STEPS

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

RESOLUTIONS = tuple(RESOLUTION_STEPS)

# Rollup histograms share one list of bins: confidence bins below this, inference-time bins
# from it on.
TIME_BIN_BASE = CONFIDENCE_BINS
# The additive columns of each rollup table (its histograms and classes are packed).
ROLLUP_SUMS = (
    "requests",
    "errors",
    "empty",
    "predictions",
    "confidence_sum",
    "timed",
    "inference_time_sum",
)
CLASS_SUMS = (
    "inferences",
    "predictions",
    "confidence_sum",
    "errors",
    "timed",
    "inference_time_sum",
)


workspaces = Table(
    "workspaces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("created_at", Timestamp, nullable=False),
    # Retention in days; null: the server's defaults.
    Column("retention_days", Integer),
    Column("image_retention_days", Integer),
    Column("event_lookback_days", Integer),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False, index=True),
    Column("name", String(128)),
    # The first characters of the key, shown in listings so a person can tell keys apart.
    Column("prefix", String(16), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("scopes", String(64), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("last_used_at", Timestamp),
    Column("revoked_at", Timestamp),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "email"),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("project", String(256)),
    Column("version", String(64)),
    Column("task", String(32)),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "name"),
)

devices = Table(
    "devices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("name", String(256), nullable=False),
    Column("first_seen", Timestamp, nullable=False),
    Column("last_seen", Timestamp, nullable=False),
    Column("version", String(128)),
    Column("hostname", String(256)),
    Column("tags", Text),  # a JSON list of strings
    Column("info", Text),  # a JSON object: system info, deployment type
    UniqueConstraint("workspace_id", "name"),
    Index(None, "workspace_id", "last_seen"),  # the fleet's offline ones first
)

# What an inference's tags name (packed/tags.py): per workspace, each class (a name and its
# class id, none as NO_CLASS_ID) and metadata field once, by an id of its own, never reused.
# `tag` is the id's character, which the ingest statement copies into the rows' tags.
NO_CLASS_ID = 2**32  # beyond any class id (items.ClassId: 32-bit)

labels = Table(
    "labels",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("id", Integer, nullable=False),
    Column("name", String(256), nullable=False),
    Column("class_id", BigInteger, nullable=False),
    Column("tag", String(1), nullable=False),
    PrimaryKeyConstraint("workspace_id", "id"),
    UniqueConstraint("workspace_id", "name", "class_id"),
)

metadata_fields = Table(
    "metadata_fields",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("id", Integer, nullable=False),
    Column("name", String(128), nullable=False),
    Column("tag", String(1), nullable=False),
    PrimaryKeyConstraint("workspace_id", "id"),
    UniqueConstraint("workspace_id", "name"),
)

# One row per inference, its facts packed (docs/architecture.md, "The stored form"): the
# columns queries bound and order by, its tags for filters, and a body with the rest.
inferences = Table(
    "inferences",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    # packed/ids.py: a UUID as its 16 bytes, other ids as text.
    Column("inference_id", LargeBinary, nullable=False),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("device_id", Integer, ForeignKey("devices.id")),
    Column("ts", Timestamp, nullable=False),
    # packed/tags.py: its classes and metadata fields by id, its metadata values by hash.
    Column("tags", Text),
    Column("body", LargeBinary, nullable=False),  # packed/body.py
    # Where the stored image lives in the blob store; null when none was kept.
    Column("image_key", String(512)),
    UniqueConstraint("workspace_id", "inference_id"),
    # Named: the indexes of the first form (migration 0016) keep theirs until it is gone.
    Index("ix_inferences_time", "workspace_id", "ts"),
    Index("ix_inferences_model_time", "workspace_id", "model_id", "ts"),
    Index("ix_inferences_device_time", "workspace_id", "device_id", "ts"),
    # Retention asks whether anyone still points at an image before deleting its file.
    Index(
        "ix_inferences_images",
        "image_key",
        sqlite_where=text("image_key IS NOT NULL"),
        postgresql_where=text("image_key IS NOT NULL"),
    ),
    # Keys are never reused: a queued range, a verdict or a cursor names one inference.
    sqlite_autoincrement=True,
)

# Inference keys committed by ingest and not yet folded into the rollups: the aggregator
# deletes a row in the transaction that adds it to the rollups. `deltas` are the batch's
# minute rollups, made as it was parsed (store/ingest.py); without them the aggregator
# derives them from the rows of the range.
rollup_queue = Table(
    "rollup_queue",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("first_pk", BigInteger, nullable=False),
    Column("last_pk", BigInteger, nullable=False),
    # The batch's first and last times (microseconds): with the workspace, its rows' key
    # range on PostgreSQL. None for batches queued before they were kept.
    Column("first_ts", BigInteger),
    Column("last_ts", BigInteger),
    Column("enqueued_at", Timestamp, nullable=False),
    Column("deltas", Text),
)

# The oldest minute from which each kind of minute rollup is complete (store/floors.py):
# "minutes" of every device, "device_minutes" per device. Older minutes are read from
# the rows.
rollup_floors = Table(
    "rollup_floors",
    metadata,
    Column("grain", String(32), primary_key=True),
    Column("floor", BigInteger, nullable=False),  # microseconds
)

# Metadata sent for an inference that has not arrived yet; joined on its arrival.
pending_metadata = Table(
    "pending_metadata",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("inference_id", String(128), nullable=False),
    Column("field", String(128), nullable=False),
    Column("value", String(1024), nullable=False),
    Column("kind", String(1), nullable=False),
    Column("received_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("workspace_id", "inference_id", "field"),
)


# Which images the SDK uploads: one rule per workspace ("" model: every model) and per model.
capture_rules = Table(
    "capture_rules",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("model", String(256), nullable=False),
    Column("rule", Text, nullable=False),  # the rule's JSON, validated by its model
    Column("updated_at", Timestamp, nullable=False),
    PrimaryKeyConstraint("workspace_id", "model"),
)

# Images kept per model and UTC day, for the daily caps of capture rules.
image_counts = Table(
    "image_counts",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("model", String(256), nullable=False),
    Column("day", Integer, nullable=False),  # days since the epoch
    Column("count", Integer, nullable=False),
    PrimaryKeyConstraint("workspace_id", "model", "day"),
)


# Alert rules, their current state, the history of their states, and the outbox of
# notifications (kept until sent, retried when a channel is down).
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("definition", Text, nullable=False),  # the rule's JSON
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("muted_until", Timestamp),
    Index(None, "workspace_id"),
)

alert_states = Table(
    "alert_states",
    metadata,
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("since", Timestamp),
    Column("pending_since", Timestamp),
    Column("last_notified", Timestamp),
    Column("last_value", Float),
    Column("evaluated_at", Timestamp),
)

alert_events = Table(
    "alert_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("at", Timestamp, nullable=False),
    Column("from_state", String(16), nullable=False),
    Column("to_state", String(16), nullable=False),
    Column("value", Float),
    Column("window_start", Timestamp, nullable=False),
    Column("window_end", Timestamp, nullable=False),
    Index(None, "rule_id", "at"),
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, nullable=False),
    Column("rule_id", Integer, ForeignKey("alert_rules.id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(16), nullable=False),  # firing, repeat, resolved, test
    Column("channel", String(16), nullable=False),  # email, json, slack
    Column("target", String(1024), nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # pending, sent, failed, suppressed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Timestamp, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("sent_at", Timestamp),
    Column("last_error", Text),
    Index(None, "status", "next_attempt_at"),
    Index(None, "rule_id", "created_at"),
)


# Operators' verdicts on single inferences, for realised precision. A row keeps what it is
# about (model, device, class, the inference's time), so it outlives the inference's raw
# retention and goes with the rollups'.
inference_feedback = Table(
    "inference_feedback",
    metadata,
    Column("inference_pk", BigId, primary_key=True, autoincrement=False),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("device_id", Integer),
    Column("class_name", String(256)),
    Column("verdict", String(16), nullable=False),
    Column("corrected_class", String(256)),
    Column("ts", Timestamp, nullable=False),
    Column("given_at", Timestamp, nullable=False),
    Index("ix_inference_feedback_ws_model_ts", "workspace_id", "model_id", "ts"),
)


# Vision Events (Roboflow's successor to Model Monitoring): use cases of typed events.
use_cases = Table(
    "use_cases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    # What clients call the useCaseId: ours when made here, theirs when a write named it.
    Column("public_id", String(256), nullable=False),
    Column("name", String(256), nullable=False),
    Column("archived", Boolean, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "public_id"),
)

vision_events = Table(
    "vision_events",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("use_case_id", Integer, ForeignKey("use_cases.id"), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("ts", Timestamp, nullable=False),
    Column("received_at", Timestamp, nullable=False),
    Column("device", String(256)),
    Column("stream", String(256)),
    Column("workflow", String(256)),
    Column("event", Text, nullable=False),  # the event as sent, JSON
    UniqueConstraint("workspace_id", "event_id"),
    # A use case's events newest first, keyset-paged by (ts, id).
    Index("ix_vision_events_page", "workspace_id", "use_case_id", "ts", "id"),
)

# One row per custom metadata field of an event, typed, for filters and the schema.
event_metadata = Table(
    "event_metadata",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("event_pk", BigId, ForeignKey("vision_events.id"), nullable=False),
    Column("field", String(100), nullable=False),
    Column("kind", String(8), nullable=False),  # string, number, boolean
    Column("text_value", Text),
    Column("number_value", Float),
    # The event's time: on PostgreSQL the facts are partitioned with their event.
    Column("ts", Timestamp, nullable=False),
    PrimaryKeyConstraint("event_pk", "field"),
    # Filters read the events with a value (text, or number) of a field along these.
    Index("ix_event_metadata_text", "workspace_id", "field", "text_value"),
    Index("ix_event_metadata_number", "workspace_id", "field", "number_value"),
)

# One row per scalar field of an event's eventData (result, severity, itemCount...), typed
# as event_metadata is, for eventFieldFilters.
event_data_fields = Table(
    "event_data_fields",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("event_pk", BigId, ForeignKey("vision_events.id"), nullable=False),
    Column("field", String(100), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("text_value", Text),
    Column("number_value", Float),
    # The event's time: on PostgreSQL the facts are partitioned with their event.
    Column("ts", Timestamp, nullable=False),
    PrimaryKeyConstraint("event_pk", "field"),
    Index("ix_event_data_fields_text", "workspace_id", "field", "text_value"),
    Index("ix_event_data_fields_number", "workspace_id", "field", "number_value"),
)

# The classes an event's images detected, each with its highest confidence (null: none
# was sent), for the detected-class filter.
event_classes = Table(
    "event_classes",
    metadata,
    Column("workspace_id", Integer, nullable=False),
    Column("event_pk", BigId, ForeignKey("vision_events.id"), nullable=False),
    Column("class_name", String(256), nullable=False),
    Column("confidence", Float),
    # The event's time: on PostgreSQL the facts are partitioned with their event.
    Column("ts", Timestamp, nullable=False),
    PrimaryKeyConstraint("event_pk", "class_name"),
    Index("ix_event_classes_class", "workspace_id", "class_name", "confidence"),
)

# The newest verdict of operator_feedback on each judged event, with what it judged
# (device, workflow, most detected class, the event's time): the feedback-status filter
# and realised precision read it. Like inference_feedback it outlives the events' lookback
# and keeps as rollups do. A verdict that came before its event is completed by the event.
event_verdicts = Table(
    "event_verdicts",
    metadata,
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("event_id", String(256), nullable=False),  # the judged event's
    Column("use_case_id", Integer, ForeignKey("use_cases.id"), nullable=False),
    Column("feedback_event_id", String(256), nullable=False),
    Column("verdict", String(16), nullable=False),
    Column("device", String(256)),
    Column("workflow", String(256)),
    Column("class_name", String(256)),
    Column("ts", Timestamp, nullable=False),  # the judged event's; the feedback's until known
    Column("given_at", Timestamp, nullable=False),  # the feedback event's timestamp
    PrimaryKeyConstraint("workspace_id", "event_id"),
    Index("ix_event_verdicts_use_case_ts", "workspace_id", "use_case_id", "ts"),
)

# Images uploaded for events; the bytes are in the image store under image_key.
event_sources = Table(
    "event_sources",
    metadata,
    Column("id", BigId, primary_key=True),
    Column("workspace_id", Integer, ForeignKey("workspaces.id"), nullable=False),
    Column("source_id", String(64), nullable=False),
    Column("image_key", String(128), nullable=False),
    # Read when the image was checked: a page draws over it without opening the file.
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("name", String(256)),
    Column("metadata", Text),
    Column("created_at", Timestamp, nullable=False),
    UniqueConstraint("workspace_id", "source_id"),
)


def _rollup_table(resolution: str) -> Table:
    """The rollups of one grain: a row per workspace, device, bucket and model, its sums as
    columns and its histograms and class figures packed (packed/rollup.py)."""
    return Table(
        f"rollups_{resolution}",
        metadata,
        Column("workspace_id", Integer, nullable=False),
        Column("bucket", Timestamp, nullable=False),
        # 0 (rollups.ALL_MODELS): every model together, of every device, by the hour and day.
        Column("model_id", Integer, nullable=False),
        # 0 (rollups.ALL_DEVICES) aggregates every device of the model.
        Column("device_id", Integer, nullable=False),
        Column("requests", Integer, nullable=False),
        Column("errors", Integer, nullable=False),
        Column("empty", Integer, nullable=False),  # requests without predictions nor error
        Column("predictions", Integer, nullable=False),
        Column("confidence_sum", Float, nullable=False),
        Column("timed", Integer, nullable=False),  # requests that reported an inference time
        Column("inference_time_sum", Float, nullable=False),
        # packed/rollup.py: the histograms, and per class its figures (and histogram, of
        # every device).
        Column("confidence_bins", LargeBinary),
        Column("time_bins", LargeBinary),
        Column("classes", LargeBinary),
        # The device leads the bucket: every read asks for one device key (0: all).
        PrimaryKeyConstraint("workspace_id", "device_id", "bucket", "model_id"),
        # A rowid table on SQLite, though the key is the row's identity: a WITHOUT ROWID
        # table keeps a row of more than about 1 KB mostly in overflow pages (a minute of
        # every device's classes), which were half empty.
    )


rollups = {resolution: _rollup_table(resolution) for resolution in RESOLUTIONS}
