"""PostgreSQL for the tests: a throwaway server started from the machine's binaries
(Debian's `postgresql`), or an existing one named by VISIONWATCH_TEST_POSTGRES_URL; on
either, databases made for one test and dropped after it."""

import glob
import itertools
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from visionwatch.db import migrate
from visionwatch.db.engine import create_database

# An admin connection to a server the tests may create and drop databases on, used
# instead of starting one: postgresql://user:password@127.0.0.1:5432/postgres
EXISTING_URL = "VISIONWATCH_TEST_POSTGRES_URL"


class PostgresUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class PostgresServer:
    admin: URL  # a connection that may create and drop databases
    pg_ctl: tuple[str, ...] = ()  # the command that controls it, for stop() and start()
    start_args: tuple[str, ...] = ()

    def url(self, database: str | None = None) -> str:
        """The URL of `database` on this server (its admin database by default)."""
        url = self.admin if database is None else self.admin.set(database=database)
        return url.render_as_string(hide_password=False)

    def stop(self) -> None:
        """A clean ("fast") shutdown: clients are cut off, committed work is kept."""
        _run([*self._control(), "-m", "fast", "-w", "stop"])

    def start(self) -> None:
        _run([*self._control(), *self.start_args])

    def _control(self) -> tuple[str, ...]:
        if not self.pg_ctl:
            raise RuntimeError("only a server the tests started can be stopped and started")
        return self.pg_ctl


def existing_postgres(url: str) -> PostgresServer:
    """The server at `url` (postgresql://user:password@host:port/database), an admin
    connection; ValueError when `url` is not one."""
    try:
        admin = make_url(url)
    except ArgumentError:
        raise ValueError(f"{EXISTING_URL} is not a URL") from None
    if admin.get_backend_name() != "postgresql" or not admin.host or not admin.username:
        shown = admin.render_as_string(hide_password=True)
        raise ValueError(
            f"{EXISTING_URL}={shown} does not name a PostgreSQL server and user: "
            "postgresql://user:password@127.0.0.1:5432/postgres"
        )
    # libpq (psycopg.connect) reads postgresql:// only; visionwatch picks its own driver.
    return PostgresServer(admin.set(drivername="postgresql", database=admin.database or "postgres"))


def binary_dir() -> Path:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresUnavailable(
        "PostgreSQL binaries not found (install Debian's `postgresql` package): "
        "no pg_ctl on PATH nor in /usr/lib/postgresql/*/bin"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """A server on a free loopback port with trust auth, fsync off; removed on exit."""
    binaries = binary_dir()
    # initdb refuses to run as root: run the server as the `postgres` user then.
    as_root = os.geteuid() == 0
    run_as: list[str] = []
    if as_root:
        try:
            postgres_user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no `postgres` user") from None
        run_as = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="vw-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    if as_root:
        os.chown(root, postgres_user.pw_uid, postgres_user.pw_gid)
        os.chown(sockets, postgres_user.pw_uid, postgres_user.pw_gid)
    port = free_port()
    user = "postgres"
    pg_ctl = [*run_as, str(binaries / "pg_ctl"), "-D", str(data)]
    try:
        _run(
            [
                *run_as,
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ]
        )
        options = (
            f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
        )
        start = ("-o", options, "-l", str(root / "server.log"), "-w", "-t", "60", "start")
        _run([*pg_ctl, *start])
        try:
            admin = URL.create("postgresql", user, None, "127.0.0.1", port, "postgres")
            yield PostgresServer(admin, tuple(pg_ctl), start)
        finally:
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "-w", "stop"], check=False, capture_output=True
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class ScratchDatabases:
    """Databases made on `server` for one test and dropped after it: empty ones, or clones
    of a template migrated once. Their names start with `prefix`, this process's own."""

    server: PostgresServer
    prefix: str = field(default_factory=lambda: f"vw_{os.getpid()}_{secrets.token_hex(3)}_")
    _numbers: Iterator[int] = field(default_factory=itertools.count, compare=False, repr=False)

    @property
    def template(self) -> str:
        return f"{self.prefix}template"

    def create(self, migrated: bool) -> str:
        """The URL of a new database: at the latest schema when `migrated`, else empty."""
        name = f"{self.prefix}{next(self._numbers)}"
        # Cloning the migrated template is much faster than migrating each database.
        template = self.template if migrated else "template0"
        self.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
        return self.server.url(name)

    def drop(self, url: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {make_url(url).database} WITH (FORCE)")

    @contextmanager
    def database(self, migrated: bool) -> Iterator[str]:
        """A new database's URL, dropped on exit."""
        url = self.create(migrated)
        try:
            yield url
        finally:
            self.drop(url)

    def names(self) -> list[str]:
        """Every database made here and still on the server, the template included."""
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            rows = conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
                (self.prefix,),
            ).fetchall()
        return [row[0] for row in rows]

    def execute(self, statement: str) -> None:
        """A statement (made of names the suite chose) on the admin connection."""
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            conn.execute(statement)


@contextmanager
def scratch_databases(existing_url: str | None = None) -> Iterator[ScratchDatabases]:
    """The suite's PostgreSQL: the server at `existing_url` when given, else one started for
    the while; with the template made, and everything made on it dropped on exit."""
    started = nullcontext(existing_postgres(existing_url)) if existing_url else running_postgres()
    with started as server:
        scratch = ScratchDatabases(server)
        try:
            psycopg.connect(server.url(), connect_timeout=10).close()
        except psycopg.OperationalError as error:
            shown = server.admin.render_as_string(hide_password=True)
            raise PostgresUnavailable(f"cannot connect to {shown}: {error}") from None
        try:
            scratch.execute(f"CREATE DATABASE {scratch.template}")
            template = create_database(server.url(scratch.template))
            migrate.upgrade(template)
            template.dispose()
            yield scratch
        finally:
            for name in scratch.names():
                scratch.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _run(command: list[str]) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
