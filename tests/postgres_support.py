"""A PostgreSQL server of one test's own, to stop and start again without touching the shared one.

`initdb` runs once per session into a template data directory (it takes seconds); each test gets a
copy, its own port and socket directory, and starts, stops (`fast` or `immediate`: a crash) and
restarts the server on the same port and data. The server runs as the `postgres` user (it refuses
root), in a directory of /tmp that user can reach (pytest's tmp_path sits under a root-only one).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

SERVER_USER = "postgres"
_SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"  # a crash, not a power cut


def postgres_bin() -> Path | None:
    """The newest installed server's `bin` directory (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _as_server_user(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", SERVER_USER, "--", *args], capture_output=True, text=True, check=True)


def owned_directory(prefix: str) -> Path:
    """An empty directory in /tmp owned by the server's user."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.chown(path, SERVER_USER, SERVER_USER)
    return path


def init_template(bin_dir: Path) -> Path:
    """`initdb` with trust authentication, once: the data directory each test copies (remove its parent)."""
    root = owned_directory("pg-template-")
    _as_server_user(str(bin_dir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", SERVER_USER, "-E", "UTF8")
    return root / "data"


class PrivatePostgres:
    """One server on a copy of the template: `start`, `stop` and `start` again, same port, same data."""

    def __init__(self, bin_dir: Path, template: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = owned_directory("pg-private-")
        self.data = self.root / "data"
        self.port = port
        subprocess.run(["cp", "-a", str(template), str(self.data)], check=True)  # -a keeps the owner and 0700
        self.url = f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{port}/postgres"
        self.running = False

    def _pg_ctl(self, *args: str) -> None:
        _as_server_user(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args)

    def start(self) -> None:
        """Start and wait until it accepts connections (`pg_ctl -w`)."""
        options = f"-p {self.port} -k {self.root} {_SERVER_OPTIONS}"
        self._pg_ctl("-l", str(self.root / "server.log"), "-o", options, "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """`immediate` kills every backend at once, with no checkpoint: what clients see of a crash."""
        self._pg_ctl("-m", mode, "stop")
        self.running = False

    def accepts(self) -> bool:
        try:
            psycopg.connect(self.url.replace("+psycopg", ""), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def remove(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def cannot_run_here() -> str | None:
    """Why a private server cannot run on this machine, or None when it can."""
    if postgres_bin() is None:
        return "no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb, pg_ctl)"
    if shutil.which("runuser") is None or os.geteuid() != 0:
        return "a private PostgreSQL needs root, to run it as the postgres user with runuser"
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        return f"no {SERVER_USER!r} user to run the server as"
    return None
