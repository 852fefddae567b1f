"""The command line: serve (the default), demo, workspaces, keys, users, db."""

import ctypes
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy import make_url

from visionwatch import __version__
from visionwatch.config import Settings
from visionwatch.db import migrate
from visionwatch.db.engine import Database, create_database
from visionwatch.logs import logging_config
from visionwatch.security import SCOPES
from visionwatch.store import accounts


def _settings(ctx: click.Context, **options: Any) -> Settings:
    """The settings from the environment, under the command's own `options`."""
    holder = ctx.ensure_object(dict)
    if "settings" not in holder:
        try:
            holder["settings"] = Settings(**options)
        except ValidationError as error:
            problems = "; ".join(
                f"VISIONWATCH_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}"
                for e in error.errors()
            )
            raise click.ClickException(f"bad configuration: {problems}") from None
    settings: Settings = holder["settings"]
    return settings


def _database(ctx: click.Context, upgrade: bool = True) -> Database:
    """The configured database, upgraded to this version's schema first; or, for commands
    that only read (`upgrade=False`), left as it is and refused unless already current:
    reading must not change a database another version's server may be using."""
    holder = ctx.ensure_object(dict)
    if "database" not in holder:
        settings = _settings(ctx)
        url = settings.database_url_or_default()
        if not upgrade and _sqlite_file_missing(url):
            raise click.ClickException(
                "no database yet: `visionwatch db upgrade` (or `serve`) creates it"
            )
        try:
            database = create_database(
                url, read_url=settings.database_read_url, max_lag=settings.read_max_lag_seconds
            )
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        ctx.call_on_close(database.dispose)
        if upgrade:
            migrate.upgrade(database)
        else:
            _require_current_schema(database)
        holder["database"] = database
    result: Database = holder["database"]
    return result


def _sqlite_file_missing(url: str) -> bool:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return False
    return not Path(parsed.database).exists()


def _require_current_schema(database: Database) -> None:
    current, head = migrate.current_revision(database), migrate.head_revision()
    if current is None:
        raise click.ClickException(
            "the database holds no visionwatch schema yet: `visionwatch db upgrade` creates it"
        )
    if current != head:
        raise click.ClickException(
            f"the database's schema is at revision {current}, this visionwatch reads {head}: "
            "run `visionwatch db upgrade` first"
        )


def _account_errors(function: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


@click.group(invoke_without_command=True)
@click.version_option(__version__)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """visionwatch: self-hosted monitoring for computer-vision models.

    Without a command, runs `serve`. Configuration comes from VISIONWATCH_*
    environment variables (VISIONWATCH_DATA_DIR, VISIONWATCH_DATABASE_URL).
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


def _serve_option(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """An option of `serve` that its environment variable also sets (VISIONWATCH_ and the
    option's name), both shown by `--help`: containers configure by environment."""
    variable = "VISIONWATCH_" + name.removeprefix("--").replace("-", "_").upper()
    return click.option(name, envvar=variable, show_envvar=True, **kwargs)


@cli.command()
@_serve_option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@_serve_option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@_serve_option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    show_default="./visionwatch-data",
    help="Where the SQLite database, images and the session secret live.",
)
@_serve_option(
    "--database-url",
    show_default="SQLite in the data dir",
    help="postgresql://user:pass@host:port/db, or sqlite:///path.db.",
)
@_serve_option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    show_default="info",
    help="The least severe record logged.",
)
@_serve_option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    show_default="text",
    help="Text, or one JSON object a line.",
)
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    data_dir: Path | None,
    database_url: str | None,
    log_level: str | None,
    log_format: str | None,
) -> None:
    """Create or upgrade the schema, then serve the API and the dashboard.

    Every other setting comes from its VISIONWATCH_* variable (see the README)."""
    import uvicorn

    from visionwatch.app import create_app

    given = {
        "data_dir": data_dir,
        "database_url": database_url,
        "log_level": log_level,
        "log_format": log_format,
    }
    _settings(ctx, **{name: value for name, value in given.items() if value is not None})
    settings = _settings(ctx)
    database = _database(ctx)
    if not accounts.list_workspaces(database):
        click.echo(
            "No workspace yet. Make one and a key to send inferences with:\n"
            "  visionwatch workspaces create my-team\n"
            "  visionwatch keys create my-team",
            err=True,
        )
    app = create_app(settings, database)
    tune_garbage_collector()
    _return_large_blocks_to_the_system()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=logging_config(settings),
        log_level=settings.log_level,
        proxy_headers=True,
    )


@cli.command()
@click.option(
    "--days",
    default=14,
    show_default=True,
    type=click.IntRange(2, 30),
    help="Days of history to make up.",
)
@click.option(
    "--rate",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0.1, 1000),
    help="Live inferences a second.",
)
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    help="Keep sending inferences while serving.",
)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--data-dir",
    default="visionwatch-demo",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
def demo(days: int, rate: float, live: bool, port: int, data_dir: Path) -> None:
    """Serve a demo workspace: a real face detector on real photographs, two weeks of a
    simulated fleet with three incidents to find, and live traffic.

    Needs the `demo` extra (OpenCV and scikit-image). Run again with the same
    data dir, it continues where it stopped.
    """
    try:
        from visionwatch.demo import runner
    except ImportError as error:
        raise click.ClickException(
            f"the demo needs {error.name}: pip install 'visionwatch[demo]'"
        ) from None
    from visionwatch.demo.state import DemoError

    try:
        runner.run(data_dir, port, days, rate, live)
    except DemoError as error:
        raise click.ClickException(str(error)) from None


def tune_garbage_collector() -> None:
    """Collect cycles less often, and never walk the objects that live as long as the server.

    A batch of 500 inferences makes tens of thousands of short-lived objects,
    freed by reference counting; at the default threshold (700) they set off
    hundreds of collections per batch, each walking the long-lived heap of the
    app: a quarter of the ingest time went there (benchmarks/README.md). The reads
    benchmark times its pages under the same tuning.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _return_large_blocks_to_the_system() -> None:
    """Give large blocks (a report's JSON, a batch's rows) their own mappings, freed whole.

    glibc raises its mmap threshold each time such a block is freed, after which large
    blocks come from the heap and stay there: a busy server's 13 MiB reports made the
    server's memory grow by about a hundred megabytes over a few of them
    (benchmarks/README.md). A fixed threshold keeps glibc from raising it. Elsewhere
    (another C library) nothing is done.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold = -3  # from glibc's malloc.h
    libc.mallopt(m_mmap_threshold, 128 * 1024)


@cli.group()
def workspaces() -> None:
    """Create and list workspaces; show or set their retention."""


@workspaces.command("create")
@click.argument("name")
@click.pass_context
@_account_errors
def workspaces_create(ctx: click.Context, name: str) -> None:
    """Create the workspace NAME (lowercase letters, digits, - and _)."""
    workspace = accounts.create_workspace(_database(ctx), name)
    click.echo(f"Created workspace {workspace.name}")


@workspaces.command("list")
@click.pass_context
def workspaces_list(ctx: click.Context) -> None:
    for workspace in accounts.list_workspaces(_database(ctx, upgrade=False)):
        click.echo(workspace.name)


@workspaces.command("retention")
@click.argument("name")
@click.option("--days", type=click.IntRange(min=1), help="Keep inferences this many days.")
@click.option("--image-days", type=click.IntRange(min=1), help="Keep images this many days.")
@click.option(
    "--event-days",
    type=click.IntRange(min=1),
    help="Keep vision events and their images this many days (their lookback).",
)
@click.pass_context
@_account_errors
def workspaces_retention(
    ctx: click.Context,
    name: str,
    days: int | None,
    image_days: int | None,
    event_days: int | None,
) -> None:
    """Show or set how long the workspace NAME keeps inferences, images and vision events."""
    settings = _settings(ctx)
    changes = days is not None or image_days is not None or event_days is not None
    database = _database(ctx, upgrade=changes)
    if changes:
        accounts.set_retention(database, name, days, image_days, event_days)
    kept = accounts.retention(database, name)
    shown = (
        ("inferences", kept.inferences, settings.retention_days),
        ("images", kept.images, settings.image_retention_days),
        ("vision events", kept.events, settings.event_lookback_days),
    )
    click.echo(
        f"{name}: "
        + ", ".join(
            f"{label} {value or default} days{'' if value else ' (default)'}"
            for label, value, default in shown
        )
    )


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.argument("workspace")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(SCOPES),
    help="Repeat for several; default: all of them.",
)
@click.option("--name", default=None, help="A label to tell keys apart.")
@click.pass_context
@_account_errors
def keys_create(
    ctx: click.Context, workspace: str, scopes: tuple[str, ...], name: str | None
) -> None:
    """Create a key for WORKSPACE and print it, alone, on the last line (shown only once)."""
    key, secret = accounts.create_key(_database(ctx), workspace, scopes or SCOPES, name)
    click.echo(f"Key {key.id} for {workspace}, scopes {','.join(sorted(key.scopes))}:", err=True)
    click.echo(secret)


@keys.command("list")
@click.argument("workspace")
@click.pass_context
@_account_errors
def keys_list(ctx: click.Context, workspace: str) -> None:
    """List the keys of WORKSPACE (their secrets are never shown again)."""
    click.echo("id\tprefix\tscopes\tcreated\tlast used\tstatus\tname")
    for key in accounts.list_keys(_database(ctx, upgrade=False), workspace):
        status = "revoked" if key.revoked_at else "active"
        last_used = key.last_used_at.isoformat(timespec="seconds") if key.last_used_at else "never"
        created = key.created_at.isoformat(timespec="seconds")
        scopes = ",".join(sorted(key.scopes))
        click.echo(
            f"{key.id}\t{key.prefix}…\t{scopes}\t{created}\t{last_used}\t{status}\t{key.name or ''}"
        )


@keys.command("revoke")
@click.argument("key_id", type=int)
@click.pass_context
@_account_errors
def keys_revoke(ctx: click.Context, key_id: int) -> None:
    """Revoke the key KEY_ID (see `keys list`); it stops working at once."""
    key = accounts.revoke_key(_database(ctx), key_id)
    click.echo(f"Revoked key {key.id} ({key.prefix}…) of {key.workspace.name}")


@cli.group()
def users() -> None:
    """Dashboard users."""


@users.command("create")
@click.argument("workspace")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
@_account_errors
def users_create(ctx: click.Context, workspace: str, email: str, password_stdin: bool) -> None:
    """Create a dashboard user EMAIL in WORKSPACE."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    accounts.create_user(_database(ctx), workspace, email, password)
    click.echo(f"Created user {email} in {workspace}")


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Create the schema or upgrade it to the latest revision."""
    database = _database(ctx)  # upgrades on open
    click.echo(f"Database at revision {migrate.current_revision(database)}")


@db.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def db_backup(ctx: click.Context, path: Path) -> None:
    """Copy the SQLite database to PATH, safely while the server runs.

    Images are files under the data dir's images/ folder, written once and never
    changed: copy that folder alongside (cp -r or rsync). For PostgreSQL this
    says how to use pg_dump.
    """
    from visionwatch.db.backup import BackupError, backup_sqlite, sqlite_path

    settings = _settings(ctx)
    try:
        size = backup_sqlite(sqlite_path(settings.database_url_or_default()), path)
    except BackupError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Backed up {size / 1024 / 1024:.1f} MiB to {path}. To restore: stop visionwatch, "
        f"copy it to {settings.data_dir / 'visionwatch.db'} and remove any -wal and -shm "
        "files beside it."
    )


@db.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would go; delete nothing.")
@click.pass_context
def db_prune(ctx: click.Context, dry_run: bool) -> None:
    """Delete inferences and images past their retention (rollups are kept longer)."""
    from visionwatch.images.blobs import FilesystemStore
    from visionwatch.retention import prune
    from visionwatch.timeutil import utcnow

    settings = _settings(ctx)
    blobs = FilesystemStore(settings.images_dir())
    report = prune(_database(ctx, upgrade=not dry_run), blobs, settings, utcnow(), dry_run=dry_run)
    verb = "Would delete" if dry_run else "Deleted"
    for name in sorted(report.inferences):
        click.echo(
            f"{name}: {verb.lower()} {report.inferences[name]} inferences, "
            f"unlink {report.images[name]} images, {report.events[name]} vision events"
        )
    if not dry_run:
        click.echo(f"{verb} {report.files} image files")
    click.echo(f"{verb} {report.rollup_rows} rollup rows past rollup retention")


def main() -> None:
    cli(obj={})
