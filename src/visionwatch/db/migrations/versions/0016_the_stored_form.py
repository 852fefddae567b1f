"""The stored form: an inference is one row, its facts packed (docs/architecture.md, "The
stored form"), and the dictionaries its tags name.

The rows of the first form are not rewritten here, in one long transaction that would
stop the server: their three tables are renamed `legacy_inferences`, `legacy_predictions`
and `legacy_inference_metadata` (on PostgreSQL with their partitions, keys, indexes and
sequence), and the stored form's `inferences` is made beside them, its keys starting
after theirs. The server's `rewrite` job then moves the old rows a batch at a time
(store/legacy.py), reads seeing both forms until it drops the old tables. A database with
no inference yet just drops them.

Going down rewrites the stored form's rows back into the first form's tables, in one
transaction (the legacy tables renamed back when they are still there). A backup before
upgrading (`visionwatch db backup`, or pg_dump) is the quicker way back for a large
database.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

OLD = ("inferences", "predictions", "inference_metadata")
NO_CLASS_ID = 2**32

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ORIGIN = EPOCH + timedelta(days=4)  # a Monday
WIDTH = timedelta(days=7)
AHEAD = timedelta(days=14)


def to_micros(value: datetime) -> int:
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


def week_start(moment: datetime) -> datetime:
    return ORIGIN + ((moment - ORIGIN) // WIDTH) * WIDTH


def upgrade() -> None:
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.create_table(
        "labels",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("class_id", sa.BigInteger, nullable=False),
        sa.Column("tag", sa.String(1), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_labels"),
        sa.UniqueConstraint(
            "workspace_id", "name", "class_id", name="uq_labels_workspace_id_name_class_id"
        ),
    )
    op.create_table(
        "metadata_fields",
        sa.Column("workspace_id", sa.Integer, nullable=False),
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("tag", sa.String(1), nullable=False),
        sa.PrimaryKeyConstraint("workspace_id", "id", name="pk_metadata_fields"),
        sa.UniqueConstraint("workspace_id", "name", name="uq_metadata_fields_workspace_id_name"),
    )
    op.add_column("rollup_queue", sa.Column("deltas", sa.Text))
    last = bind.execute(sa.text("SELECT MAX(id) FROM inferences")).scalar()
    weeks: set[datetime] = set()
    if last is None:
        for table in reversed(OLD):
            op.execute(f"DROP TABLE {table}")
    else:
        if postgres:
            weeks = _stored_weeks(bind)
        for table in OLD:
            _set_aside(bind, table, postgres)
    if postgres:
        _create_partitioned(weeks)
    else:
        _create_sqlite()
    if last is not None:
        if postgres:
            op.execute(f"SELECT setval('inferences_id_seq', {int(last)})")
        else:
            op.execute(
                f"INSERT INTO sqlite_sequence (name, seq) VALUES ('inferences', {int(last)})"
            )


def _set_aside(bind: sa.Connection, table: str, postgres: bool) -> None:
    """`table` becomes `legacy_<table>`; on PostgreSQL its partitions, the indexes of its
    keys and its sequence too, freeing their names for the stored form's."""
    legacy = f"legacy_{table}"
    op.execute(f"ALTER TABLE {table} RENAME TO {legacy}")
    if not postgres:
        return  # SQLite renames the indexes of keys with their table
    children = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": legacy},
    ).scalars()
    for child in list(children):
        op.execute(f'ALTER TABLE "{child}" RENAME TO "legacy_{child}"')
    keys = bind.execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) "
            "AND contype IN ('p', 'u')"
        ),
        {"table": legacy},
    ).scalars()
    for key in list(keys):
        op.execute(f'ALTER TABLE {legacy} RENAME CONSTRAINT "{key}" TO "legacy_{key}"')
    # The rewrite job drops these tables while the server reads. Dropping a foreign key
    # locks the table it names (models, devices, workspaces), which a read holds while it
    # waits for the job to finish: a deadlock. Rows only leave these tables, so their
    # foreign keys have nothing left to check.
    foreign = bind.execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) "
            "AND contype = 'f'"
        ),
        {"table": legacy},
    ).scalars()
    for key in list(foreign):
        op.execute(f'ALTER TABLE {legacy} DROP CONSTRAINT "{key}"')
    if table == "inferences":
        op.execute("ALTER SEQUENCE inferences_id_seq RENAME TO legacy_inferences_id_seq")


def _stored_weeks(bind: sa.Connection) -> set[datetime]:
    """The weeks the old rows lie in: the stored form's partitions for them."""
    step, origin = WIDTH // timedelta(microseconds=1), to_micros(ORIGIN)
    found = bind.execute(
        sa.text(f"SELECT DISTINCT floor((ts - {origin})::numeric / {step})::bigint FROM inferences")
    ).scalars()
    return {ORIGIN + week * WIDTH for week in found}


_COLUMNS_SQL = """
    workspace_id INTEGER NOT NULL,
    inference_id BYTEA NOT NULL,
    model_id INTEGER NOT NULL,
    device_id INTEGER,
    ts BIGINT NOT NULL,
    tags TEXT,
    body BYTEA NOT NULL,
    image_key VARCHAR(512),
    CONSTRAINT fk_inferences_workspace_id_workspaces FOREIGN KEY (workspace_id)
        REFERENCES workspaces (id),
    CONSTRAINT fk_inferences_model_id_models FOREIGN KEY (model_id) REFERENCES models (id),
    CONSTRAINT fk_inferences_device_id_devices FOREIGN KEY (device_id) REFERENCES devices (id)
"""
_INDEXES = (
    "CREATE INDEX ix_inferences_time ON inferences (workspace_id, ts)",
    "CREATE INDEX ix_inferences_model_time ON inferences (workspace_id, model_id, ts)",
    "CREATE INDEX ix_inferences_device_time ON inferences (workspace_id, device_id, ts)",
    "CREATE INDEX ix_inferences_images ON inferences (image_key) WHERE image_key IS NOT NULL",
)


def _create_sqlite() -> None:
    op.execute(
        f"""CREATE TABLE inferences (
            id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
            {_COLUMNS_SQL.replace("BYTEA", "BLOB")},
            CONSTRAINT uq_inferences_workspace_id_inference_id UNIQUE (workspace_id, inference_id)
        )"""
    )
    for index in _INDEXES:
        op.execute(index)


def _create_partitioned(weeks: set[datetime]) -> None:
    op.execute(
        f"""CREATE TABLE inferences (
            id BIGSERIAL NOT NULL,
            {_COLUMNS_SQL},
            CONSTRAINT pk_inferences PRIMARY KEY (id, ts),
            CONSTRAINT uq_inferences_workspace_id_inference_id
                UNIQUE (workspace_id, inference_id, ts)
        ) PARTITION BY RANGE (ts)"""
    )
    now = datetime.now(UTC)
    moment = week_start(now)
    while moment < now + AHEAD:
        weeks.add(moment)
        moment += WIDTH
    for start in sorted(weeks):
        low, high = to_micros(start), to_micros(start + WIDTH)
        op.execute(
            f"CREATE TABLE inferences_p{start:%Y%m%d} PARTITION OF inferences "
            f"FOR VALUES FROM ({low}) TO ({high})"
        )
    op.execute("CREATE TABLE inferences_default PARTITION OF inferences DEFAULT")
    for index in _INDEXES:
        op.execute(index)


def downgrade() -> None:
    """Rewrite the stored form's rows into the first form's tables: the legacy tables
    renamed back when the rewrite job has not dropped them yet, else made anew."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    _set_stored_aside(bind, postgres)
    if _exists(bind, "legacy_inferences", postgres):
        for table in OLD:
            _rename_back(bind, table, postgres)
    elif postgres:
        _old_partitioned()
    else:
        for statement in _OLD_SQLITE:
            op.execute(statement)
    _rewrite_back(bind)
    op.execute("DROP TABLE stored_inferences")
    if postgres:
        last = bind.execute(sa.text("SELECT MAX(id) FROM inferences")).scalar()
        if last is not None:
            op.execute(f"SELECT setval('inferences_id_seq', {int(last)})")
    op.drop_column("rollup_queue", "deltas")
    op.drop_table("metadata_fields")
    op.drop_table("labels")


def _exists(bind: sa.Connection, table: str, postgres: bool) -> bool:
    query = (
        "SELECT to_regclass(:table)"
        if postgres
        else "SELECT name FROM sqlite_master WHERE type = 'table' AND name = :table"
    )
    return bind.execute(sa.text(query), {"table": table}).scalar() is not None


def _set_stored_aside(bind: sa.Connection, postgres: bool) -> None:
    op.execute("ALTER TABLE inferences RENAME TO stored_inferences")
    if not postgres:
        return
    for child in list(
        bind.execute(
            sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST('stored_inferences' AS regclass)"
            )
        ).scalars()
    ):
        op.execute(f'ALTER TABLE "{child}" RENAME TO "stored_{child}"')
    for key in ("pk_inferences", "uq_inferences_workspace_id_inference_id"):
        op.execute(f"ALTER TABLE stored_inferences RENAME CONSTRAINT {key} TO stored_{key}")
    op.execute("ALTER SEQUENCE inferences_id_seq RENAME TO stored_inferences_id_seq")


def _rename_back(bind: sa.Connection, table: str, postgres: bool) -> None:
    legacy = f"legacy_{table}"
    op.execute(f"ALTER TABLE {legacy} RENAME TO {table}")
    if not postgres:
        return
    children = bind.execute(
        sa.text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:table AS regclass)"
        ),
        {"table": table},
    ).scalars()
    for child in list(children):
        op.execute(f'ALTER TABLE "{child}" RENAME TO "{child.removeprefix("legacy_")}"')
    keys = bind.execute(
        sa.text(
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:table AS regclass) "
            "AND contype IN ('p', 'u')"
        ),
        {"table": table},
    ).scalars()
    for key in list(keys):
        op.execute(
            f'ALTER TABLE {table} RENAME CONSTRAINT "{key}" TO "{key.removeprefix("legacy_")}"'
        )
    if table == "inferences":
        op.execute("ALTER SEQUENCE legacy_inferences_id_seq RENAME TO inferences_id_seq")
        for key, column, names in _OLD_FOREIGN_KEYS:
            op.execute(
                f"ALTER TABLE inferences ADD CONSTRAINT {key} FOREIGN KEY ({column}) "
                f"REFERENCES {names} (id)"
            )


# The first form's foreign keys on PostgreSQL, which its set-aside tables lost.
_OLD_FOREIGN_KEYS = (
    ("fk_inferences_workspace_id_workspaces", "workspace_id", "workspaces"),
    ("fk_inferences_model_id_models", "model_id", "models"),
    ("fk_inferences_device_id_devices", "device_id", "devices"),
)


def _rewrite_back(bind: sa.Connection) -> None:
    """Every stored row as the first form's rows: the inference with its item as sent (plain
    JSON, which that form reads as it is), its predictions and its metadata."""
    # The stored form as this revision wrote it (the packed modules read every version).
    from visionwatch.histograms import time_bin
    from visionwatch.items import encode_metadata_value
    from visionwatch.packed.body import unpack_body
    from visionwatch.packed.ids import decode_id
    from visionwatch.packed.remainder import Named, item_of
    from visionwatch.packed.tags import read_tags

    names = {
        (workspace_id, label_id): (name, None if class_id == NO_CLASS_ID else class_id)
        for workspace_id, label_id, name, class_id in bind.execute(
            sa.text("SELECT workspace_id, id, name, class_id FROM labels")
        )
    }
    fields = {
        (workspace_id, field_id): name
        for workspace_id, field_id, name in bind.execute(
            sa.text("SELECT workspace_id, id, name FROM metadata_fields")
        )
    }
    last = -1
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT s.id, s.workspace_id, s.inference_id, s.model_id, s.device_id, s.ts,"
                " s.tags, s.body, s.image_key, m.name AS model, d.name AS device"
                " FROM stored_inferences s JOIN models m ON m.id = s.model_id"
                " LEFT JOIN devices d ON d.id = s.device_id"
                " WHERE s.id > :last ORDER BY s.id LIMIT 1000"
            ),
            {"last": last},
        ).all()
        if not rows:
            return
        last = rows[-1].id
        made, predicted, said = [], [], []
        for row in rows:
            body = unpack_body(bytes(row.body))
            tags = read_tags(row.tags, body.labels, body.fields)
            labels = [names[(row.workspace_id, i)] for i in tags.labels]
            named_fields = [fields[(row.workspace_id, i)] for i in tags.fields]
            inference_id = decode_id(bytes(row.inference_id))
            moment = from_micros(row.ts)
            named = Named(inference_id, row.model, row.device, moment, body, labels, named_fields)
            predictions = body.predictions
            made.append(
                {
                    "id": row.id,
                    "workspace_id": row.workspace_id,
                    "inference_id": inference_id,
                    "model_id": row.model_id,
                    "device_id": row.device_id,
                    "ts": row.ts,
                    "received_at": row.ts + body.received_lag,
                    "inference_time": body.inference_time,
                    "task": body.task,
                    "image_width": body.image_width,
                    "image_height": body.image_height,
                    "error": body.error,
                    "prediction_count": len(predictions),
                    "image_key": row.image_key,
                    "item": json.dumps(item_of(named), separators=(",", ":")),
                    "time_bin": None
                    if body.inference_time is None
                    else time_bin(body.inference_time),
                }
            )
            for idx, score in enumerate(predictions):
                name, class_id = labels[score.label]
                predicted.append(
                    {
                        "workspace_id": row.workspace_id,
                        "inference_pk": row.id,
                        "idx": idx,
                        "ts": row.ts,
                        "class_name": name,
                        "class_id": class_id,
                        "confidence": score.confidence,
                        "x": score.x,
                        "y": score.y,
                        "width": score.width,
                        "height": score.height,
                    }
                )
            for position, value in body.metadata:
                text, kind = encode_metadata_value(value)
                said.append(
                    {
                        "workspace_id": row.workspace_id,
                        "inference_pk": row.id,
                        "field": named_fields[position],
                        "value": text,
                        "kind": kind,
                        "ts": row.ts,
                    }
                )
        for table, values in (
            ("inferences", made),
            ("predictions", predicted),
            ("inference_metadata", said),
        ):
            if values:
                columns = list(values[0])
                bind.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(columns)}) "
                        f"VALUES ({', '.join(':' + c for c in columns)})"
                    ),
                    values,
                )


_OLD_COLUMNS = """
    workspace_id INTEGER NOT NULL,
    inference_id VARCHAR(128) NOT NULL,
    model_id INTEGER NOT NULL,
    device_id INTEGER,
    ts BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    inference_time FLOAT,
    task VARCHAR(32),
    image_width INTEGER,
    image_height INTEGER,
    error TEXT,
    prediction_count INTEGER NOT NULL,
    image_key VARCHAR(512),
    item TEXT NOT NULL,
    time_bin SMALLINT,
    CONSTRAINT fk_inferences_workspace_id_workspaces FOREIGN KEY(workspace_id)
        REFERENCES workspaces (id),
    CONSTRAINT fk_inferences_model_id_models FOREIGN KEY(model_id) REFERENCES models (id),
    CONSTRAINT fk_inferences_device_id_devices FOREIGN KEY(device_id) REFERENCES devices (id)
"""
_OLD_PREDICTIONS = """
    workspace_id INTEGER NOT NULL,
    inference_pk BIGINT NOT NULL,
    idx SMALLINT NOT NULL,
    ts BIGINT NOT NULL,
    class_name VARCHAR(256) NOT NULL,
    class_id INTEGER,
    confidence FLOAT NOT NULL,
    x FLOAT,
    y FLOAT,
    width FLOAT,
    height FLOAT
"""
_OLD_METADATA = """
    workspace_id INTEGER NOT NULL,
    inference_pk BIGINT NOT NULL,
    field VARCHAR(128) NOT NULL,
    value VARCHAR(1024) NOT NULL,
    kind VARCHAR(1) NOT NULL,
    ts BIGINT NOT NULL
"""
_OLD_INDEXES = (
    "CREATE INDEX ix_inferences_workspace_id_ts_id ON inferences (workspace_id, ts, id)",
    "CREATE INDEX ix_inferences_workspace_id_model_id_ts ON inferences "
    "(workspace_id, model_id, ts)",
    "CREATE INDEX ix_inferences_workspace_id_device_id_ts ON inferences "
    "(workspace_id, device_id, ts)",
    "CREATE INDEX ix_inferences_image_key ON inferences (image_key) WHERE image_key IS NOT NULL",
    "CREATE INDEX ix_predictions_workspace_id_class_name_ts ON predictions "
    "(workspace_id, class_name, ts)",
    "CREATE INDEX ix_inference_metadata_workspace_id_field_value_ts ON inference_metadata "
    "(workspace_id, field, value, ts)",
)
_OLD_SQLITE = (
    f"""CREATE TABLE inferences (
        id INTEGER NOT NULL, {_OLD_COLUMNS},
        CONSTRAINT pk_inferences PRIMARY KEY (id),
        CONSTRAINT uq_inferences_workspace_id_inference_id UNIQUE (workspace_id, inference_id)
    )""",
    f"""CREATE TABLE predictions ({_OLD_PREDICTIONS},
        CONSTRAINT pk_predictions PRIMARY KEY (workspace_id, inference_pk, idx)
    ) WITHOUT ROWID""",
    f"""CREATE TABLE inference_metadata ({_OLD_METADATA},
        CONSTRAINT pk_inference_metadata PRIMARY KEY (workspace_id, inference_pk, field)
    ) WITHOUT ROWID""",
    *_OLD_INDEXES,
)


def _old_partitioned() -> None:
    op.execute(
        f"""CREATE TABLE inferences (
            id BIGSERIAL NOT NULL, {_OLD_COLUMNS},
            CONSTRAINT pk_inferences PRIMARY KEY (id, ts),
            CONSTRAINT uq_inferences_workspace_id_inference_id
                UNIQUE (workspace_id, inference_id, ts)
        ) PARTITION BY RANGE (ts)"""
    )
    op.execute(
        f"""CREATE TABLE predictions ({_OLD_PREDICTIONS},
            CONSTRAINT pk_predictions PRIMARY KEY (workspace_id, inference_pk, idx, ts)
        ) PARTITION BY RANGE (ts)"""
    )
    op.execute(
        f"""CREATE TABLE inference_metadata ({_OLD_METADATA},
            CONSTRAINT pk_inference_metadata PRIMARY KEY (workspace_id, inference_pk, field, ts)
        ) PARTITION BY RANGE (ts)"""
    )
    now = datetime.now(UTC)
    moment = week_start(now)
    while moment < now + AHEAD:
        low, high = to_micros(moment), to_micros(moment + WIDTH)
        for table in OLD:
            op.execute(
                f"CREATE TABLE {table}_p{moment:%Y%m%d} PARTITION OF {table} "
                f"FOR VALUES FROM ({low}) TO ({high})"
            )
        moment += WIDTH
    for table in OLD:
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
    for index in _OLD_INDEXES:
        op.execute(index)
