"""Workspaces, API keys and dashboard users."""

import hmac
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Select, select, update
from sqlalchemy.exc import IntegrityError

from visionwatch import security
from visionwatch.db.engine import Database
from visionwatch.db.schema import api_keys, users, workspaces
from visionwatch.timeutil import utcnow

WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
# Writing last_used_at on every request would turn reads into writes; a
# minute's precision is what a person looking at a key list needs.
LAST_USED_PRECISION = timedelta(minutes=1)


class AccountError(ValueError):
    """A request about accounts that cannot be done, with a message for the person."""


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class User:
    id: int
    email: str
    workspace: Workspace


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    workspace: Workspace
    name: str | None
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def create_workspace(db: Database, name: str) -> Workspace:
    if not WORKSPACE_NAME.match(name):
        raise AccountError(
            "workspace names have 1 to 64 characters: lowercase letters, digits, - and _, "
            "starting with a letter or digit"
        )
    try:
        with db.write() as conn:
            row = conn.execute(
                workspaces.insert()
                .values(name=name, created_at=utcnow())
                .returning(workspaces.c.id)
            ).one()
    except IntegrityError:
        raise AccountError(f"workspace {name!r} already exists") from None
    return Workspace(id=row.id, name=name)


def list_workspaces(db: Database) -> list[Workspace]:
    with db.read() as conn:
        rows = conn.execute(select(workspaces.c.id, workspaces.c.name).order_by(workspaces.c.name))
        return [Workspace(id=r.id, name=r.name) for r in rows]


def get_workspace(conn: Connection, name: str) -> Workspace | None:
    row = conn.execute(
        select(workspaces.c.id, workspaces.c.name).where(workspaces.c.name == name)
    ).one_or_none()
    return None if row is None else Workspace(id=row.id, name=row.name)


def _require_workspace(conn: Connection, name: str) -> Workspace:
    workspace = get_workspace(conn, name)
    if workspace is None:
        raise AccountError(f"no workspace named {name!r}")
    return workspace


def create_key(
    db: Database,
    workspace_name: str,
    scopes: tuple[str, ...] = security.SCOPES,
    name: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key and its secret, which is shown this once and stored only hashed."""
    unknown = set(scopes) - set(security.SCOPES)
    if unknown or not scopes:
        raise AccountError(f"scopes are some of {', '.join(security.SCOPES)}")
    secret = security.new_api_key()
    ordered = [s for s in security.SCOPES if s in scopes]
    now = utcnow()
    with db.write() as conn:
        workspace = _require_workspace(conn, workspace_name)
        row = conn.execute(
            api_keys.insert()
            .values(
                workspace_id=workspace.id,
                name=name,
                prefix=security.key_display_prefix(secret),
                key_hash=security.hash_api_key(secret),
                scopes=",".join(ordered),
                created_at=now,
            )
            .returning(api_keys.c.id)
        ).one()
    key = ApiKey(
        id=row.id,
        workspace=workspace,
        name=name,
        prefix=security.key_display_prefix(secret),
        scopes=frozenset(ordered),
        created_at=now,
        last_used_at=None,
        revoked_at=None,
    )
    return key, secret


def _key_query() -> Select[Any]:
    return select(api_keys, workspaces.c.name.label("workspace_name")).join(
        workspaces, workspaces.c.id == api_keys.c.workspace_id
    )


def _key_from_row(row: object) -> ApiKey:
    r = row._mapping  # type: ignore[attr-defined]
    return ApiKey(
        id=r["id"],
        workspace=Workspace(id=r["workspace_id"], name=r["workspace_name"]),
        name=r["name"],
        prefix=r["prefix"],
        scopes=frozenset(r["scopes"].split(",")),
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        revoked_at=r["revoked_at"],
    )


def list_keys(db: Database, workspace_name: str) -> list[ApiKey]:
    with db.read() as conn:
        workspace = _require_workspace(conn, workspace_name)
        rows = conn.execute(
            _key_query().where(api_keys.c.workspace_id == workspace.id).order_by(api_keys.c.id)
        )
        return [_key_from_row(r) for r in rows]


def revoke_key(db: Database, key_id: int) -> ApiKey:
    with db.write() as conn:
        row = conn.execute(_key_query().where(api_keys.c.id == key_id)).one_or_none()
        if row is None:
            raise AccountError(f"no key with id {key_id}")
        key = _key_from_row(row)
        if key.revoked_at is None:
            conn.execute(
                update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=utcnow())
            )
    return key


def authenticate_key(db: Database, secret: str) -> ApiKey | None:
    """The live key with this secret, or None; records when it was last used."""
    if not secret.startswith(security.KEY_PREFIX) or len(secret) > 128:
        return None
    digest = security.hash_api_key(secret)
    with db.read() as conn:
        row = conn.execute(_key_query().where(api_keys.c.key_hash == digest)).one_or_none()
    # Found by its digest, so timing tells nothing of the secret; compared again in
    # constant time all the same, so that no future lookup can make it otherwise.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    key = _key_from_row(row)
    if key.revoked_at is not None:
        return None
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
        with db.write() as conn:
            conn.execute(update(api_keys).where(api_keys.c.id == key.id).values(last_used_at=now))
    return key


def create_user(db: Database, workspace_name: str, email: str, password: str) -> int:
    email = email.strip()
    if "@" not in email or len(email) > 320:
        raise AccountError(f"not an email address: {email!r}")
    if len(password) < 8:
        raise AccountError("passwords have at least 8 characters")
    password_hash = security.hash_password(password)
    try:
        with db.write() as conn:
            workspace = _require_workspace(conn, workspace_name)
            row = conn.execute(
                users.insert()
                .values(
                    workspace_id=workspace.id,
                    email=email,
                    password_hash=password_hash,
                    created_at=utcnow(),
                )
                .returning(users.c.id)
            ).one()
    except IntegrityError:
        raise AccountError(f"{email} is already a user of {workspace_name}") from None
    return int(row.id)


def _user_query() -> Select[Any]:
    return select(
        users.c.id,
        users.c.email,
        users.c.password_hash,
        workspaces.c.id.label("ws_id"),
        workspaces.c.name.label("ws_name"),
    ).join(workspaces, workspaces.c.id == users.c.workspace_id)


def _user(row: Any) -> User:
    return User(row.id, row.email, Workspace(row.ws_id, row.ws_name))


def get_user(db: Database, user_id: int) -> User | None:
    with db.read() as conn:
        row = conn.execute(_user_query().where(users.c.id == user_id)).one_or_none()
    return None if row is None else _user(row)


def authenticate_user(db: Database, email: str, password: str) -> list[User]:
    """The users with this email whose password this is (one per workspace that has them)."""
    with db.read() as conn:
        rows = conn.execute(_user_query().where(users.c.email == email.strip())).all()
    # Check every row, found or not, so the time taken does not tell which emails exist.
    if not rows:
        security.verify_password(password, security.DUMMY_PASSWORD_HASH)
    return [_user(row) for row in rows if security.verify_password(password, row.password_hash)]


def set_retention(
    db: Database,
    workspace_name: str,
    days: int | None,
    image_days: int | None,
    event_days: int | None = None,
) -> None:
    """Set the workspace's retention; a None leaves that one as it is."""
    given = (
        ("retention_days", days),
        ("image_retention_days", image_days),
        ("event_lookback_days", event_days),
    )
    values = {name: value for name, value in given if value is not None}
    with db.write() as conn:
        workspace = _require_workspace(conn, workspace_name)
        conn.execute(update(workspaces).where(workspaces.c.id == workspace.id).values(**values))


@dataclass(frozen=True, slots=True)
class Retention:
    """Days the workspace keeps each kind of data; None: the server's default."""

    inferences: int | None
    images: int | None
    events: int | None


def retention(db: Database, workspace_name: str) -> Retention:
    with db.read() as conn:
        workspace = _require_workspace(conn, workspace_name)
        return _retention(conn, workspace.id)


def _retention(conn: Connection, workspace_id: int) -> Retention:
    row = conn.execute(
        select(
            workspaces.c.retention_days,
            workspaces.c.image_retention_days,
            workspaces.c.event_lookback_days,
        ).where(workspaces.c.id == workspace_id)
    ).one()
    return Retention(row.retention_days, row.image_retention_days, row.event_lookback_days)


def event_lookback_days(db: Database, workspace_id: int) -> int | None:
    """The days the workspace keeps vision events, when it has its own lookback."""
    with db.read() as conn:
        return _retention(conn, workspace_id).events
