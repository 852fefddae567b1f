"""A local cluster on loopback, as a company runs visionwatch past one machine: nginx in
front of several `visionwatch serve` replicas, a PostgreSQL primary, and a hot standby
streaming from it (made with pg_basebackup). Everything is the machine's own packages
(Debian's nginx and postgresql); nothing home-made stands in between.

`scripts/cluster up|down|status [DIR]` drives it from a shell; the cluster tests start one
the same way (`started`). The state lives in DIR: each component's data, config, log and
PID, and `cluster.json`, which `down` and `status` read. `down` stops only what `up` started,
by its PIDs. docs/deploy.md writes the same topology up for real machines.
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import psycopg

from tests.support.postgres import PostgresUnavailable, binary_dir, free_port

REPLICAS = 3
READ_MAX_LAG = 5  # seconds: the dashboard's reads leave a standby further behind
DATABASE = "visionwatch"
STATE = "cluster.json"
# The processes this one started, kept until stopped: a Popen dropped while its process
# runs warns (and the tests turn warnings into errors).
_children: dict[int, "subprocess.Popen[bytes]"] = {}


class ClusterUnavailable(RuntimeError):
    """What the cluster needs is not on this machine (nginx, PostgreSQL)."""


@dataclass
class Cluster:
    root: str
    url: str  # nginx: what users and clients are given
    primary_port: int
    standby_port: int
    server_ports: list[int]
    server_pids: list[int]
    nginx_pid: int
    data_dir: str  # shared by the replicas: images and the session secret

    @property
    def primary_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.primary_port}/{DATABASE}"

    @property
    def standby_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.standby_port}/{DATABASE}"

    def server_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.server_ports[index]}"

    def server_env(self) -> dict[str, str]:
        """What every replica is given: the same database, data directory and secret."""
        return {
            "VISIONWATCH_DATABASE_URL": self.primary_url,
            "VISIONWATCH_DATABASE_READ_URL": self.standby_url,
            "VISIONWATCH_READ_MAX_LAG_SECONDS": str(READ_MAX_LAG),
            "VISIONWATCH_DATA_DIR": self.data_dir,
            "VISIONWATCH_PUBLIC_URL": self.url,
        }

    def stop_standby(self) -> None:
        _pg_ctl(Path(self.root) / "standby", "-m", "fast", "-w", "stop")

    def start_standby(self) -> None:
        _pg_ctl_start(Path(self.root) / "standby", self.standby_port)

    def kill_server(self, index: int) -> None:
        """SIGKILL one replica (a crash: no clean shutdown), and wait until it is gone."""
        pid = self.server_pids[index]
        os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)

    def start_server(self, index: int) -> None:
        """Start replica `index` again on its port, and wait until it answers."""
        self.server_pids[index] = _start_server(Path(self.root), self, index)
        _save(self)


# -- up -------------------------------------------------------------------------------


def up(root: Path, replicas: int = REPLICAS) -> Cluster:
    """Start the cluster in `root`. Its state is saved as each part starts, so that a start
    that fails part way is stopped by `down` (which it calls) without leaving a process."""
    # Debian puts nginx in /usr/sbin, off an ordinary user's PATH.
    nginx = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    if nginx is None:
        raise ClusterUnavailable("nginx not found (install Debian's `nginx` package)")
    try:
        binaries = binary_dir()
    except PostgresUnavailable as error:
        raise ClusterUnavailable(str(error)) from None
    root.mkdir(parents=True, exist_ok=True)
    run_as = _postgres_user(root)
    data_dir = root / "shared"
    data_dir.mkdir(exist_ok=True)
    cluster = Cluster(
        root=str(root),
        url="",
        primary_port=free_port(),
        standby_port=free_port(),
        server_ports=[free_port() for _ in range(replicas)],
        server_pids=[],
        nginx_pid=0,
        data_dir=str(data_dir),
    )
    _save(cluster)
    try:
        _start_primary(binaries, run_as, root / "primary", cluster.primary_port)
        _start_standby(binaries, run_as, root, cluster.primary_port, cluster.standby_port)
        for index in range(replicas):  # they start together: one migrates, the others wait
            cluster.server_pids.append(_spawn_server(root, cluster, index))
            _save(cluster)
        for index in range(replicas):
            _wait_until_ready(cluster.server_url(index), root / f"server-{index}.log")
        nginx_port = free_port()
        cluster.url = f"http://127.0.0.1:{nginx_port}"
        cluster.nginx_pid = _start_nginx(nginx, root, nginx_port, cluster.server_ports)
        _save(cluster)
        _wait_until_ready(cluster.url, root / "nginx" / "error.log")
    except BaseException:
        down(root)
        raise
    return cluster


def _postgres_user(root: Path) -> list[str]:
    """initdb and postgres refuse root: as root they run as the `postgres` user."""
    if os.geteuid() != 0:
        return []
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ClusterUnavailable("running as root and there is no `postgres` user") from None
    for path in (root, root / "primary", root / "standby"):
        path.mkdir(exist_ok=True)
        os.chown(path, user.pw_uid, user.pw_gid)
    return _as_postgres()


def _pg_options(port: int, sockets: Path) -> str:
    # Durable as in production (fsync on), small enough for a laptop.
    return (
        f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c wal_level=replica -c max_wal_senders=5 -c hot_standby=on "
        "-c shared_buffers=128MB"
    )


def _start_primary(binaries: Path, run_as: list[str], home: Path, port: int) -> None:
    data = home / "data"
    _run(
        [
            *run_as,
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",  # loopback only; docs/deploy.md says what production uses
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    _pg_ctl_start(home, port)
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {DATABASE}")


def _start_standby(
    binaries: Path, run_as: list[str], root: Path, primary_port: int, port: int
) -> None:
    """A copy of the primary that streams its WAL and answers reads (a hot standby)."""
    home = root / "standby"
    _run(
        [
            *run_as,
            str(binaries / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary_port),
            "-U",
            "postgres",
            "-D",
            str(home / "data"),
            "-R",  # standby.signal and primary_conninfo: it follows the primary
            "-X",
            "stream",
            "-c",
            "fast",
        ]
    )
    _pg_ctl_start(home, port)


def _pg_ctl_start(home: Path, port: int) -> None:
    sockets = home / "sockets"
    sockets.mkdir(exist_ok=True)
    if _as_postgres():
        user = pwd.getpwnam("postgres")
        os.chown(sockets, user.pw_uid, user.pw_gid)
    options = _pg_options(port, sockets)
    _pg_ctl(home, "-o", options, "-l", str(home / "server.log"), "-w", "-t", "60", "start")


def _spawn_server(root: Path, cluster: Cluster, index: int) -> int:
    log = open(root / f"server-{index}.log", "a")  # noqa: SIM115  # the child keeps it
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "visionwatch",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(cluster.server_ports[index]),
        ],
        env={**os.environ, **cluster.server_env()},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # it outlives `scripts/cluster up`, until `down`
    )
    log.close()
    _children[process.pid] = process
    return process.pid


def _start_server(root: Path, cluster: Cluster, index: int) -> int:
    pid = _spawn_server(root, cluster, index)
    _wait_until_ready(cluster.server_url(index), root / f"server-{index}.log")
    return pid


NGINX_CONF = """\
# visionwatch's local cluster: generated by tests/support/cluster.py (see docs/deploy.md).
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
daemon off;
{user}
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # The servers refuse what is too large themselves (413, naming the limit).
    client_max_body_size 0;
    upstream visionwatch {{
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://visionwatch;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            # Reports stream in: pass the body on as it comes.
            proxy_request_buffering off;
            proxy_read_timeout 120s;
            # A replica that is down: the next one takes the request, if nothing was sent.
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def _start_nginx(nginx: str, root: Path, port: int, server_ports: list[int]) -> int:
    home = root / "nginx"
    home.mkdir(exist_ok=True)
    for temp in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (home / temp).mkdir(exist_ok=True)
        (home / temp).chmod(0o777)  # nginx's workers do not run as root
    servers = "\n".join(
        f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in server_ports
    )
    conf = home / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            root=home,
            port=port,
            servers=servers,
            user="user root;" if os.geteuid() == 0 else "",
        )
    )
    _run([nginx, "-t", "-q", "-p", str(home), "-c", str(conf)])
    log = open(home / "stdout.log", "a")  # noqa: SIM115  # the child keeps it
    process = subprocess.Popen(
        [nginx, "-p", str(home), "-c", str(conf)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    _children[process.pid] = process
    return process.pid


# -- down, status ---------------------------------------------------------------------


def down(root: Path) -> None:
    """Stop what `up` started in `root`, by its PIDs, and remove its state."""
    cluster = load(root)
    for pid in [cluster.nginx_pid, *cluster.server_pids]:
        _stop(pid)
    for home in ("standby", "primary"):
        if (root / home / "data").exists():  # one that never started: nothing to stop
            _pg_ctl(root / home, "-m", "fast", "-w", "stop", check=False)
    shutil.rmtree(root, ignore_errors=True)


def status(root: Path) -> dict[str, str]:
    """Each component and how it is: a line a person reads."""
    cluster = load(root)
    found = {"load balancer": f"{cluster.url} ({_alive(cluster.nginx_pid)})"}
    for index, pid in enumerate(cluster.server_pids):
        found[f"server {index}"] = (
            f"{cluster.server_url(index)} ({_alive(pid)}, {_ready(cluster.server_url(index))})"
        )
    found["primary"] = f"127.0.0.1:{cluster.primary_port} ({_replication(cluster)})"
    found["standby"] = f"127.0.0.1:{cluster.standby_port} ({_standby(cluster)})"
    return found


def load(root: Path) -> Cluster:
    try:
        return Cluster(**json.loads((root / STATE).read_text()))
    except FileNotFoundError:
        raise SystemExit(f"no cluster in {root}: start one with `scripts/cluster up`") from None


def _save(cluster: Cluster) -> None:
    (Path(cluster.root) / STATE).write_text(json.dumps(asdict(cluster), indent=2))


def _alive(pid: int) -> str:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid} gone"
    return f"pid {pid}"


def _ready(url: str) -> str:
    try:
        answer = httpx.get(f"{url}/readyz", timeout=2)
    except httpx.TransportError as error:
        return f"not answering: {type(error).__name__}"
    return "ready" if answer.status_code == 200 else f"readyz {answer.status_code}"


def _replication(cluster: Cluster) -> str:
    try:
        with psycopg.connect(cluster.primary_url, connect_timeout=2) as conn:
            rows = conn.execute(
                "SELECT state, COALESCE(replay_lag, interval '0') FROM pg_stat_replication"
            ).fetchall()
    except psycopg.Error as error:
        return f"down: {error}".strip()
    return ", ".join(f"standby {state}, replay lag {lag}" for state, lag in rows) or "no standby"


def _standby(cluster: Cluster) -> str:
    try:
        with psycopg.connect(cluster.standby_url, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), now() - pg_last_xact_replay_timestamp()"
            ).fetchone()
    except psycopg.Error as error:
        return f"down: {error}".strip()
    assert row is not None
    return f"in recovery: {row[0]}, last replayed transaction {row[1]} ago"


# -- helpers --------------------------------------------------------------------------


def _pg_ctl(home: Path, *args: str, check: bool = True) -> None:
    _run([*_as_postgres(), str(binary_dir() / "pg_ctl"), "-D", str(home / "data"), *args], check)


def _as_postgres() -> list[str]:
    """initdb and postgres refuse root: as root they run as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def _run(command: list[str], check: bool = True) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed:\n{done.stdout}{done.stderr}")


def _wait_until_ready(url: str, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log.exists() else ""
    raise RuntimeError(f"{url} did not become ready within 90 s:\n{tail}")


def _stop(pid: int) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    _wait_gone(pid)


def _wait_gone(pid: int, seconds: float = 30) -> None:
    child = _children.pop(pid, None)
    if child is not None:  # started by this process: reap it
        try:
            child.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
        return
    deadline = time.monotonic() + seconds  # started by `scripts/cluster up`: poll
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


@contextmanager
def started(replicas: int = REPLICAS) -> Iterator[Cluster]:
    """A cluster for the length of a `with`: brought down, by its PIDs, on exit."""
    root = Path(tempfile.mkdtemp(prefix="vw-cluster-"))
    try:
        cluster = up(root, replicas)  # a failed start has stopped what it started
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        down(root)


def main() -> None:
    parser = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("dir", nargs="?", default=".cluster", help="its state (default .cluster)")
    parser.add_argument("--replicas", type=int, default=REPLICAS)
    args = parser.parse_args()
    root = Path(args.dir).resolve()
    if args.command == "up":
        if (root / STATE).exists():
            raise SystemExit(f"a cluster runs in {root} already: `scripts/cluster down` first")
        cluster = up(root, args.replicas)
        print(f"visionwatch: {cluster.url}")
        print(
            f"  {len(cluster.server_ports)} replicas behind nginx, PostgreSQL primary "
            f"127.0.0.1:{cluster.primary_port}, hot standby 127.0.0.1:{cluster.standby_port}"
        )
        env = " ".join(f"{k}={v}" for k, v in cluster.server_env().items())
        print(f"  a workspace and key: {env} visionwatch workspaces create NAME, keys create NAME")
    elif args.command == "down":
        down(root)
        print(f"stopped the cluster in {root}")
    else:
        for name, state in status(root).items():
            print(f"{name:>13}: {state}")


if __name__ == "__main__":
    main()
