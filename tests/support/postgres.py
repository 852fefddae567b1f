"""Start a throwaway PostgreSQL server from the machine's binaries (Debian's `postgresql`)."""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    pg_ctl: tuple[str, ...] = ()  # the command that controls it, for stop() and start()
    start_args: tuple[str, ...] = ()

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def stop(self) -> None:
        """A clean ("fast") shutdown: clients are cut off, committed work is kept."""
        _run([*self.pg_ctl, "-m", "fast", "-w", "stop"])

    def start(self) -> None:
        _run([*self.pg_ctl, *self.start_args])


def _binary_dir() -> Path:
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
    binaries = _binary_dir()
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
            yield PostgresServer("127.0.0.1", port, user, tuple(pg_ctl), start)
        finally:
            subprocess.run(
                [*pg_ctl, "-m", "immediate", "-w", "stop"], check=False, capture_output=True
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run(command: list[str]) -> None:
    done = subprocess.run(command, check=False, capture_output=True, text=True)
    if done.returncode != 0:
        raise PostgresUnavailable(
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
