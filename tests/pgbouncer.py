"""A throwaway PgBouncer in transaction pooling mode, for tests (Debian's ``pgbouncer`` package).

:func:`running_pgbouncer` writes its own config and user list into a temporary directory, starts
``pgbouncer`` on a free port of 127.0.0.1 in front of the PostgreSQL server of a URL (``auth_type = trust``:
PgBouncer passes no password on, PostgreSQL's own rules decide), waits until it accepts connections, and
stops it on exit. ``KAQUAN_TEST_PGBOUNCER=1`` routes the app's connections of a whole test run through one
(``tests/conftest.py``); ``tests/integration/db`` starts its own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

PGBOUNCER = "/usr/sbin/pgbouncer"


def pgbouncer_binary() -> str | None:
    """The ``pgbouncer`` executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or (PGBOUNCER if os.access(PGBOUNCER, os.X_OK) else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Bouncer:
    port: int
    directory: Path
    process: subprocess.Popen[bytes]

    def url(self, url: str) -> str:
        """``url`` with its host and port replaced by this PgBouncer's."""
        return make_url(url).set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)

    def log(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(encoding="utf-8", errors="replace")


def _config(upstream: str, port: int, directory: Path, users: tuple[str, ...], pool_size: int) -> None:
    target = make_url(upstream)
    (directory / "users.txt").write_text("".join(f'"{u}" ""\n' for u in users), encoding="utf-8")
    (directory / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"* = host={target.host or '127.0.0.1'} port={target.port or 5432}",
                "",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = trust",
                f"auth_file = {directory / 'users.txt'}",
                "pool_mode = transaction",
                f"default_pool_size = {pool_size}",
                "max_client_conn = 2000",
                # a transaction waiting longer than this for a server connection fails instead of hanging
                "query_wait_timeout = 60",
                "server_lifetime = 3600",
                "log_connections = 0",
                "log_disconnections = 0",
                "",
            ]
        ),
        encoding="utf-8",
    )
    for f in directory.iterdir():
        f.chmod(0o644)


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"pgbouncer exited ({process.returncode}): {log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"pgbouncer did not listen on {port}: {log.read_text(errors='replace')}")


@contextmanager
def running_pgbouncer(
    upstream: str, *, users: tuple[str, ...] = ("postgres", "kaquan_app"), pool_size: int = 20
) -> Iterator[Bouncer]:
    """A PgBouncer (transaction pooling, ``pool_size`` server connections per database and user) in front of
    the server of ``upstream``; stopped and its directory removed on exit."""
    binary = pgbouncer_binary()
    if binary is None:
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install pgbouncer)")
    directory = Path(tempfile.mkdtemp(prefix="kaquan-pgbouncer-"))
    directory.chmod(0o755)  # read by the unprivileged user PgBouncer runs as when started by root
    port = _free_port()
    _config(upstream, port, directory, users, pool_size)
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = "postgres" if _user_exists("postgres") else "nobody"
        command[1:1] = ["-u", user]
    log = directory / "pgbouncer.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_until_listening(port, process, log)
        yield Bouncer(port, directory, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
