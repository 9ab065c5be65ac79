"""Database engine, session factory and schema migrations (Alembic).

SQLite runs in WAL mode with foreign keys on and a busy timeout. PostgreSQL connections give
up after `POSTGRES_CONNECT_TIMEOUT_SECONDS`, and its errors are cleaned of the values libpq
quotes in them (see `_clean_postgres_error`). `migrate()` brings any database to the latest
revision; `serve` and `import` call it on start.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine, ExceptionContext
from sqlmodel import Session

from edge_bridge.tuning import POSTGRES_CONNECT_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _postgres_error_text(orig: BaseException) -> str:
    """What a psycopg error may say in a log: its SQLSTATE, primary message and constraint.

    libpq's DETAIL (`Key (tag)=(04C0FFEE4711) already exists.`, the failing row of a check
    constraint), CONTEXT and HINT quote the values; they are left out. A data exception's
    (class 22) primary message quotes the bad input after a colon; that part goes too.
    """
    diag = getattr(orig, "diag", None)
    sqlstate = getattr(orig, "sqlstate", None)
    primary = getattr(diag, "message_primary", None)
    if primary is None:  # no server answer (refused, reset): libpq's own first line
        primary = str(orig).split("\n", 1)[0]
    elif sqlstate and sqlstate.startswith("22"):
        primary = primary.split(":", 1)[0]
    parts = [f"sqlstate={sqlstate}"] if sqlstate else []
    parts.append(primary)
    constraint = getattr(diag, "constraint_name", None)
    if constraint:
        parts.append(f"constraint={constraint}")
    return " ".join(parts)


def _clean_postgres_error(context: ExceptionContext) -> None:
    """`handle_error` listener: rewrite the message of a psycopg error and of its wrapper.

    The exceptions keep their classes, `orig` and `orig.sqlstate` (what `dberrors` reads to
    tell a transient failure); only their text changes, so neither `str(error)` nor a logged
    traceback (which prints the wrapped psycopg error too) carries a tag or a name.
    """
    orig = context.original_exception
    if not type(orig).__module__.startswith("psycopg"):
        return
    text = _postgres_error_text(orig)
    orig.args = (text,)
    # `chained_exception` exists once an earlier listener returned a replacement
    for wrapper in (context.sqlalchemy_exception, getattr(context, "chained_exception", None)):
        if isinstance(wrapper, sa.exc.StatementError) and wrapper.orig is orig:
            wrapper.args = (f"({type(orig).__module__}.{type(orig).__name__}) {text}",)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for any SQLAlchemy URL; SQLite files get their directory and pragmas.

    `hide_parameters`: a database error's message and traceback leave out the bound values
    (tags, names, password hashes), so no log line carries them. PostgreSQL errors are also
    cleaned of the values libpq puts in their text, and a connection attempt to a host that
    does not answer gives up after `POSTGRES_CONNECT_TIMEOUT_SECONDS` (unless the caller
    passes its own `connect_args`) instead of blocking `/ready` and the writer for the
    operating system's TCP timeout.
    """
    kwargs["hide_parameters"] = True
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"check_same_thread": False})
        engine = sa.create_engine(url, **kwargs)
        sa.event.listen(engine, "connect", _on_sqlite_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    if url.startswith("postgresql"):
        kwargs.setdefault("connect_args", {"connect_timeout": POSTGRES_CONNECT_TIMEOUT_SECONDS})
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "postgresql":
        sa.event.listen(engine, "handle_error", _clean_postgres_error)
    return engine


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine) -> None:
    """Upgrade the database to the latest revision (a no-op when it is current)."""
    command.upgrade(alembic_config(engine), "head")
    logger.info("Database at latest revision url=%s", engine.url.render_as_string())


def ping(engine: Engine) -> bool:
    """Whether a fresh connection answers `SELECT 1` (for /ready)."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception:
        return False
    return True


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """One database session inside one transaction: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
