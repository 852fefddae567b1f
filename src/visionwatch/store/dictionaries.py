"""The workspaces' dictionaries: classes (labels) and metadata fields by id.

A row's tags name its labels and fields by id (packed/tags.py). Ids are given per
workspace, in order, and never change or go: what is read of them is kept in memory for
good (`Database.caches`), and what a write adds is kept once it is committed.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from threading import Lock
from typing import Any

import orjson
from sqlalchemy import Connection, Table, func, select

from visionwatch.db import dialect as dialects
from visionwatch.db.dialect import Dialect
from visionwatch.db.engine import Database
from visionwatch.db.schema import NO_CLASS_ID, labels, metadata_fields
from visionwatch.packed.tags import MAX_ID, field_tag, label_tag

Label = tuple[str, int | None]  # a class name and its class id


class DictionaryFull(ValueError):
    """A workspace has named more classes or fields than tags can tell apart."""


@dataclass
class _Known:
    """One workspace's entries read or written so far: name -> (id, tag), id -> name."""

    labels: dict[Label, tuple[int, str]] = field(default_factory=dict)
    label_names: dict[int, Label] = field(default_factory=dict)
    fields: dict[str, tuple[int, str]] = field(default_factory=dict)
    field_names: dict[int, str] = field(default_factory=dict)


@dataclass
class _Cache:
    lock: Lock = field(default_factory=Lock)
    workspaces: dict[int, _Known] = field(default_factory=dict)

    def of(self, workspace_id: int) -> _Known:
        with self.lock:
            return self.workspaces.setdefault(workspace_id, _Known())


def _of_connection(conn: Connection, workspace_id: int) -> _Known:
    """What this database connection has read of a workspace's dictionaries (a pooled
    connection keeps it: it always reaches the same database, whose ids never change)."""
    found = conn.info.get("dictionaries")
    if found is None:
        found = conn.info["dictionaries"] = _Cache()
    assert isinstance(found, _Cache)
    return found.of(workspace_id)


def _cache(db: Database) -> _Cache:
    found = db.caches.get("dictionaries")
    if found is None:
        found = db.caches.setdefault("dictionaries", _Cache())
    assert isinstance(found, _Cache)
    return found


@dataclass(frozen=True, slots=True)
class Ensured:
    """The ids of a batch's labels and fields, in its order: kept in memory once the write
    that made them commits (`remember`)."""

    labels: list[tuple[Label, int]]
    fields: list[tuple[str, int]]

    @property
    def label_tags(self) -> list[str]:
        return [label_tag(i) for _, i in self.labels]

    @property
    def field_tags(self) -> list[str]:
        return [field_tag(i) for _, i in self.fields]


def ensure(
    db: Database | None,
    conn: Connection,
    dialect: Dialect,
    workspace_id: int,
    wanted_labels: Sequence[Label],
    wanted_fields: Sequence[str],
) -> Ensured:
    """The ids of `wanted_labels` and `wanted_fields`, made in the dictionaries when new.
    Run under the workspace's ingest lock: new ids are the workspace's next ones. What
    `db` keeps in memory spares looking up what it knows (None: everything is)."""
    known = _cache(db).of(workspace_id) if db is not None else _Known()
    label_ids = {label: known.labels[label][0] for label in wanted_labels if label in known.labels}
    asked = [label for label in wanted_labels if label not in label_ids]
    if asked:
        stored = {
            (name, None if class_id == NO_CLASS_ID else class_id): label_id
            for label_id, name, class_id in _existing(conn, labels, workspace_id, asked)
        }
        made = []
        last = _last_id(conn, labels, workspace_id)
        for label in asked:
            if label not in stored:
                last = _next(last, "classes")
                stored[label] = last
                name, class_id = label
                made.append(
                    {
                        "workspace_id": workspace_id,
                        "id": last,
                        "name": name,
                        "class_id": NO_CLASS_ID if class_id is None else class_id,
                        "tag": label_tag(last),
                    }
                )
        if made:
            conn.execute(dialects.insert(dialect, labels), made)
        label_ids.update((label, stored[label]) for label in asked)
    field_ids = {name: known.fields[name][0] for name in wanted_fields if name in known.fields}
    wanted = [name for name in wanted_fields if name not in field_ids]
    if wanted:
        found = {
            name: field_id
            for field_id, name in _existing(
                conn, metadata_fields, workspace_id, [(n, None) for n in wanted]
            )
        }
        made = []
        last = _last_id(conn, metadata_fields, workspace_id)
        for name in wanted:
            if name not in found:
                last = _next(last, "metadata fields")
                found[name] = last
                made.append(
                    {"workspace_id": workspace_id, "id": last, "name": name, "tag": field_tag(last)}
                )
        if made:
            conn.execute(dialects.insert(dialect, metadata_fields), made)
        field_ids.update((name, found[name]) for name in wanted)
    return Ensured(
        labels=[(label, label_ids[label]) for label in wanted_labels],
        fields=[(name, field_ids[name]) for name in wanted_fields],
    )


def _existing(
    conn: Connection, table: Table, workspace_id: int, wanted: Sequence[Label]
) -> list[tuple[Any, ...]]:
    """(id, name[, class id]) of the rows of `table` named as `wanted` names them."""
    columns = [table.c.id, table.c.name, *([table.c.class_id] if table is labels else [])]
    names = sorted({name for name, _ in wanted})
    found: list[tuple[Any, ...]] = []
    for start in range(0, len(names), 500):  # under every parameter limit
        chunk = names[start : start + 500]
        found += conn.execute(
            select(*columns).where(table.c.workspace_id == workspace_id, table.c.name.in_(chunk))
        ).all()
    return found


def _last_id(conn: Connection, table: Table, workspace_id: int) -> int:
    query = select(func.coalesce(func.max(table.c.id), 0)).where(
        table.c.workspace_id == workspace_id
    )
    return int(conn.execute(query).scalar_one())


def _next(last: int, what: str) -> int:
    if last + 1 > MAX_ID:
        raise DictionaryFull(f"a workspace names at most {MAX_ID:,} {what}")
    return last + 1


def remember(db: Database, workspace_id: int, ensured: Ensured) -> None:
    """Keep the ids of a committed write's labels and fields in memory."""
    known = _cache(db).of(workspace_id)
    for label, label_id in ensured.labels:
        known.labels[label] = (label_id, label_tag(label_id))
        known.label_names[label_id] = label
    for name, field_id in ensured.fields:
        known.fields[name] = (field_id, field_tag(field_id))
        known.field_names[field_id] = name


def label_names(
    db: Database | None, conn: Connection, workspace_id: int, ids: Iterable[int]
) -> dict[int, Label]:
    """The (class, class id) of label ids, from memory (`db`'s, else the connection's) or
    the database."""
    known = _cache(db).of(workspace_id) if db is not None else _of_connection(conn, workspace_id)
    missing = {i for i in ids if i not in known.label_names}
    if missing:
        rows = conn.execute(
            select(labels.c.id, labels.c.name, labels.c.class_id).where(
                labels.c.workspace_id == workspace_id, labels.c.id.in_(sorted(missing))
            )
        )
        for row_id, name, class_id in rows:
            label = (name, None if class_id == NO_CLASS_ID else class_id)
            known.label_names[row_id] = label
            known.labels[label] = (row_id, label_tag(row_id))
    return known.label_names


def field_names(
    db: Database | None, conn: Connection, workspace_id: int, ids: Iterable[int]
) -> dict[int, str]:
    known = _cache(db).of(workspace_id) if db is not None else _of_connection(conn, workspace_id)
    missing = {i for i in ids if i not in known.field_names}
    if missing:
        rows = conn.execute(
            select(metadata_fields.c.id, metadata_fields.c.name).where(
                metadata_fields.c.workspace_id == workspace_id,
                metadata_fields.c.id.in_(sorted(missing)),
            )
        )
        for row_id, name in rows:
            known.field_names[row_id] = name
            known.fields[name] = (row_id, field_tag(row_id))
    return known.field_names


def name_id(conn: Connection, workspace_id: int, name: str) -> int | None:
    """The id the rollups count a class name by: its first label's."""
    found = conn.execute(
        select(func.min(labels.c.id)).where(
            labels.c.workspace_id == workspace_id, labels.c.name == name
        )
    ).scalar()
    return None if found is None else int(found)


def tags_of_class(conn: Connection, workspace_id: int, name: str) -> list[str]:
    """The tags of a class name: one per class id it came with."""
    rows = conn.execute(
        select(labels.c.tag).where(labels.c.workspace_id == workspace_id, labels.c.name == name)
    )
    return sorted(row[0] for row in rows)


def tag_of_field(conn: Connection, workspace_id: int, name: str) -> str | None:
    return conn.execute(
        select(metadata_fields.c.tag).where(
            metadata_fields.c.workspace_id == workspace_id, metadata_fields.c.name == name
        )
    ).scalar_one_or_none()


def batch_tags(dialect: Dialect, name: str) -> list[str]:
    """Statements that leave the scratch table `name` (pos, tag) empty: a batch's labels
    or fields by their position in it, which the ingest statement looks its rows' up in."""
    column = "pos INTEGER PRIMARY KEY, tag TEXT NOT NULL"
    return dialects.scratch_table(dialect, name, column)


def tags_json(tags: list[str]) -> str:
    return orjson.dumps(tags).decode()
