"""Configuration of the archive: environment variables, an optional TOML file, defaults.

Precedence, highest first: explicit arguments (CLI options), environment variables, the
config file (``ARCHIVE_CONFIG`` or ``<data dir>/archive.toml``), built-in defaults.

=====================  =======================================  ==============================
setting                environment                              default
=====================  =======================================  ==============================
data_dir               ``ARCHIVE_DATA_DIR``                     ``./archive-data``
db_url                 ``ARCHIVE_DB_URL``                       ``sqlite:///<data_dir>/catalog.sqlite``
broker_url             ``ARCHIVE_BROKER_URL``                   none: tasks run eagerly in-process
crds_path              ``CRDS_PATH``                            ``<data_dir>/crds``
crds_context           ``CRDS_CONTEXT``                         the context marked in use in the catalog
lease_seconds          ``ARCHIVE_LEASE_SECONDS``                ``600`` (renewed every third of it
                                                                while the job runs; bounds how long
                                                                a dead worker's job waits)
beat_interval_seconds  ``ARCHIVE_BEAT_INTERVAL``                ``3600``
requeue_after_seconds  ``ARCHIVE_REQUEUE_AFTER``                ``21600`` (a queued job not started
                                                                after this is sent again)
queue                  ``ARCHIVE_QUEUE``                        ``archive`` (the Celery queue)
readonly_db_url        ``ARCHIVE_READONLY_DB_URL``              SQLite: the catalog file opened
                                                                read-only; PostgreSQL: none (set it
                                                                to the role ``archive db grant``
                                                                makes; ``archive sql`` refuses a
                                                                role that can write)
sql_statement_timeout  ``ARCHIVE_SQL_STATEMENT_TIMEOUT``        ``30`` (seconds, read-only SQL)
sql_lock_timeout       ``ARCHIVE_SQL_LOCK_TIMEOUT``             ``2`` (seconds, read-only SQL)
umask                  ``ARCHIVE_UMASK``                        ``022`` (octal: files 0644, directories
                                                                0755, readable by the group)
=====================  =======================================  ==============================
"""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Resolved configuration. Paths are absolute."""

    data_dir: Path
    db_url: str
    broker_url: str | None
    crds_path: Path
    crds_context: str | None = None
    lease_seconds: int = 600
    beat_interval_seconds: int = 3600
    requeue_after_seconds: int = 21600
    queue: str = "archive"
    readonly_db_url: str | None = None
    sql_statement_timeout: float = 30.0
    sql_lock_timeout: float = 2.0
    umask: int = 0o022
    extra: dict = field(default_factory=dict)

    @property
    def raw_dir(self) -> Path:
        """Where ingested raw exposures are stored: ``<data>/raw/<program>/<file>``."""
        return self.data_dir / "raw"

    @property
    def products_dir(self) -> Path:
        """Where products go: ``<data>/products/<program>/<root>/job-<id>/``."""
        return self.data_dir / "products"

    @property
    def associations_dir(self) -> Path:
        """Where association JSON files go: ``<data>/associations/``."""
        return self.data_dir / "associations"

    @property
    def eager(self) -> bool:
        """True when no broker is configured: Celery tasks run in the calling process."""
        return not self.broker_url

    def with_(self, **changes) -> "Settings":
        """Return a copy of these settings with some fields changed."""
        return replace(self, **changes)


def _config_file(data_dir: Path) -> dict:
    path = os.environ.get("ARCHIVE_CONFIG")
    candidate = Path(path) if path else data_dir / "archive.toml"
    if not candidate.is_file():
        if path:
            raise FileNotFoundError(f"ARCHIVE_CONFIG={path}: no such file")
        return {}
    with open(candidate, "rb") as fh:
        try:
            data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{candidate}: not valid TOML: {exc}") from exc
    return data.get("archive", data)


def _umask(value) -> int:
    try:
        mask = int(str(value), 8)
    except ValueError:
        raise ValueError(f"ARCHIVE_UMASK={value!r}: not an octal umask such as 022") from None
    if not 0 <= mask <= 0o777:
        raise ValueError(f"ARCHIVE_UMASK={value!r}: outside 000..777")
    return mask


def load_settings(data_dir: str | Path | None = None) -> Settings:
    """Resolve the settings from arguments, environment, config file and defaults.

    Raises
    ------
    FileNotFoundError
        If ``ARCHIVE_CONFIG`` names a file that does not exist.
    ValueError
        If the config file is not valid TOML, or ``ARCHIVE_UMASK`` is not an octal umask.
    """
    env = os.environ
    ddir = Path(data_dir or env.get("ARCHIVE_DATA_DIR") or "archive-data").expanduser().resolve()
    cfg = _config_file(ddir)

    def pick(env_name: str, key: str, default=None):
        value = env.get(env_name)
        if value not in (None, ""):
            return value
        return cfg.get(key, default)

    db_url = pick("ARCHIVE_DB_URL", "db_url") or f"sqlite:///{ddir / 'catalog.sqlite'}"
    broker = pick("ARCHIVE_BROKER_URL", "broker_url") or None
    crds_path = Path(pick("CRDS_PATH", "crds_path") or ddir / "crds").expanduser().resolve()
    return Settings(
        data_dir=ddir,
        db_url=db_url,
        broker_url=broker,
        crds_path=crds_path,
        crds_context=pick("CRDS_CONTEXT", "crds_context") or None,
        lease_seconds=int(pick("ARCHIVE_LEASE_SECONDS", "lease_seconds", 600)),
        beat_interval_seconds=int(pick("ARCHIVE_BEAT_INTERVAL", "beat_interval_seconds", 3600)),
        requeue_after_seconds=int(pick("ARCHIVE_REQUEUE_AFTER", "requeue_after_seconds", 21600)),
        queue=pick("ARCHIVE_QUEUE", "queue", "archive"),
        readonly_db_url=pick("ARCHIVE_READONLY_DB_URL", "readonly_db_url") or None,
        sql_statement_timeout=float(pick("ARCHIVE_SQL_STATEMENT_TIMEOUT", "sql_statement_timeout", 30)),
        sql_lock_timeout=float(pick("ARCHIVE_SQL_LOCK_TIMEOUT", "sql_lock_timeout", 2)),
        umask=_umask(pick("ARCHIVE_UMASK", "umask", "022")),
        extra={k: v for k, v in cfg.items()},
    )
