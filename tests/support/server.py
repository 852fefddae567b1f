"""Run `visionwatch serve` as a real process on a free loopback port."""

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import IO

import httpx

from tests.support.postgres import free_port


def cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "visionwatch", *args],
        check=False,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


@contextmanager
def serving(
    env: dict[str, str], port: int | None = None, options: tuple[str, ...] | None = None
) -> Iterator[str]:
    """The base URL of a server started with `env`; it is stopped (by its PID) on exit.
    `options` of `serve` default to `--port` and the port."""
    with serving_process(env, port, options=options) as (base, _):
        yield base


@contextmanager
def serving_process(
    env: dict[str, str],
    port: int | None = None,
    log_to: IO[str] | None = None,
    options: tuple[str, ...] | None = None,
) -> Iterator[tuple[str, "subprocess.Popen[str]"]]:
    """Like `serving`, with the server's process (to read its memory, say); its log goes to
    `log_to` when given."""
    port = port or free_port()
    options = ("--port", str(port)) if options is None else options
    # A file, not a pipe: nobody reads the log while the test runs, and a full
    # pipe would block the server on its next log line.
    with tempfile.TemporaryFile(mode="w+") if log_to is None else nullcontext(log_to) as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "visionwatch", "serve", *options],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, base, log)
            yield base, process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _wait_until_up(process: subprocess.Popen[str], base: str, log: IO[str]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read()}")
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("server did not answer /healthz within 60 s")
        time.sleep(0.1)
