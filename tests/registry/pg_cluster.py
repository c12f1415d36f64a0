"""A throwaway PostgreSQL cluster for the registry tests: initdb into a temporary
directory, listen on a free port of 127.0.0.1, stop and delete afterwards.

initdb refuses to run as root, so as root the cluster runs as the `postgres`
system user (created if missing) in a data directory it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

INSTALL_HINT = (
    "PostgreSQL not found (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or on PATH); "
    "install it with `apt-get install -y postgresql` to run the PostgreSQL registry tests"
)


def find_bin() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    found = candidates[0] if candidates else shutil.which("initdb")
    if found is None:
        return None
    folder = Path(found).resolve().parent
    return folder if (folder / "pg_ctl").exists() else None


class PostgresCluster:
    def __init__(self, bin_dir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="aiaas-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.user = _run_as_user()
        if self.user is not None:
            os.chmod(self.root, 0o755)
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}"

    def start(self, *, durable: bool = False) -> None:
        """`durable=False` (tests) turns off fsync: nothing here must survive a power cut."""
        self._pg("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                 "--locale=C", "--no-sync", "--no-instructions")  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        )
        if not durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._options = options
        self.resume()

    def pause(self) -> None:
        """Stop the server as an operator's restart does (fast: sessions are cut), data kept."""
        self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> None:
        """Start the server again on the same port and data (after `start` and `pause`)."""
        self._pg("pg_ctl", "-D", self.data, "-l", self.log, "-o", self._options, "-w", "-t", "120",
                 "start")  # fmt: skip

    def create_database(self) -> str:
        import psycopg

        name = f"t_{uuid.uuid4().hex[:16]}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as connection:
            connection.execute(f"CREATE DATABASE {name}")
        return f"{self.url}/{name}"

    def stop(self) -> None:
        pid = self._postmaster_pid()
        try:
            self._pg("pg_ctl", "-D", self.data, "-m", "fast", "-w", "-t", "60", "stop")
        except subprocess.CalledProcessError:
            if pid is not None:
                _kill(pid)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _pg(self, program: str, *args: object) -> None:
        command = [str(self.bin_dir / program), *map(str, args)]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, result.stderr + log
            )


def _run_as_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"],
            check=True,
        )
    return "postgres"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGQUIT)
    except ProcessLookupError:
        return
    for _ in range(100):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
