"""The registry database: engine per URI, one session context manager, retries.

SQLite gets its pragmas on every connection (WAL, foreign keys, a busy timeout)
and its transactions are begun by us, not by the driver: reads with BEGIN, writes
with BEGIN IMMEDIATE, so that two writers queue for the lock up front instead of
failing halfway through. PostgreSQL writes lock the model row; both retry the
whole transaction when the database says it lost a race.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from aiaas.errors import InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_URI = "AIAAS_REGISTRY_URI"
BUSY_TIMEOUT_MS = 30_000
RETRIES = 8
_WRITE = "aiaas_registry_write"
#: PostgreSQL SQLSTATEs after which the same transaction may well succeed on a retry.
_PG_RETRYABLE = {"40001", "40P01", "55P03"}


def home_dir() -> Path:
    return Path(os.environ.get("AIAAS_HOME", Path.home() / ".aiaas")).expanduser()


def default_uri() -> str:
    return f"sqlite:///{home_dir() / 'registry.db'}"


def resolve_uri(uri: str | None) -> URL:
    """The URI given, else $AIAAS_REGISTRY_URI, else the embedded SQLite file."""
    text = uri or os.environ.get(ENV_URI) or default_uri()
    try:
        url = make_url(text)
    except ArgumentError:
        raise InvalidArgument(f"invalid registry URI {text!r}") from None
    if url.drivername in ("postgresql", "postgres"):
        # psycopg 3 is the driver we ship; SQLAlchemy's default would be psycopg2.
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise InvalidArgument(
            f"unsupported registry URI {url.render_as_string()!r}: "
            "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
        )
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        raise InvalidArgument("an in-memory SQLite registry would vanish; give a file path")
    return url


def sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite":
        return None
    return Path(str(url.database)).expanduser().absolute()


def check_sqlite_file(path: Path, *, create: bool) -> None:
    """A SQLite registry is made only where asked for: the folder must exist (a typo in a
    path must not become a new empty registry), except the default one under AIAAS_HOME;
    and only commands that write (`create`) make the file."""
    if path.parent == home_dir().absolute():
        path.parent.mkdir(parents=True, exist_ok=True)
    if not path.parent.is_dir():
        raise Unavailable(
            f"cannot open registry sqlite:///{path}: folder {path.parent} does not exist"
        )
    if not create and not path.is_file():
        raise NotFound(f"no registry at sqlite:///{path}: nothing has been registered there yet")


class Database:
    """One engine and the way every registry transaction is run on it."""

    def __init__(self, url: URL, *, create: bool = True) -> None:
        self.url = url
        self.dialect = url.get_backend_name()
        path = sqlite_path(url)
        if path is not None:
            check_sqlite_file(path, create=create)
            self.engine = create_engine(
                url.set(database=str(path)), connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}
            )
            _install_sqlite_hooks(self.engine)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        self._write_engine = self.engine.execution_options(**{_WRITE: True})

    @property
    def display_uri(self) -> str:
        """The URI without its password, for messages."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """Commit on success, roll back on any error; rows never outlive it."""
        session = Session(bind=self._write_engine if write else self.engine)
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in a write transaction, for work outside the ORM (migrations)."""
        with self._write_engine.connect() as connection, connection.begin():
            yield connection

    def run(self, work: Callable[[Session], T], *, write: bool = False) -> T:
        """Run `work` in one transaction, again from the start when the database lost a race."""
        for attempt in range(RETRIES):
            try:
                with self.session(write=write) as session:
                    return work(session)
            except DBAPIError as error:
                if attempt < RETRIES - 1 and self._retryable(error):
                    log.debug("registry transaction retried after %s", error.orig)
                    time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
                    continue
                if self._retryable(error):
                    raise Unavailable(f"registry database {self.display_uri} is busy") from error
                # A server that went away (restart, network) cuts the connection mid-call.
                if isinstance(error, OperationalError | InterfaceError) or (
                    error.connection_invalidated
                ):
                    raise Unavailable(
                        f"registry database {self.display_uri} failed: {error.orig}"
                    ) from error
                raise
        raise AssertionError("unreachable")

    def dispose(self) -> None:
        self.engine.dispose()

    def _retryable(self, error: DBAPIError) -> bool:
        if self.dialect == "sqlite":
            return getattr(error.orig, "sqlite_errorcode", None) in (5, 6) or "locked" in str(
                error.orig
            )
        return getattr(error.orig, "sqlstate", None) in _PG_RETRYABLE


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver; `_on_begin` issues BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
