"""Logging set-up for the processes we start: one line per record, key=value context.

Only the CLI calls `configure_logging`; every line ends with `instance_id=<INSTANCE_ID>`.
The filter strips query strings from uvicorn's access log (they may carry `token=`) and
masks anything that looks like a token or password.
"""

from __future__ import annotations

import logging
import re

_QUERY = re.compile(r"(\s/[^\s?\"]*)\?[^\s\"]*")
_SECRETS = re.compile(r"((?:token|password|secret|authorization)[=:]\s*)[^\s&,;\"']+", re.I)
_BEARER = re.compile(r"(bearer\s+)[^\s\"']+", re.I)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    """Remove query strings after paths, `token=…`-style values and anything shaped like a JWT."""
    text = _QUERY.sub(r"\1?<redacted>", text)
    text = _JWT.sub("<jwt>", text)
    text = _BEARER.sub(r"\1<redacted>", text)
    return _SECRETS.sub(r"\1<redacted>", text)


class RedactingFilter(logging.Filter):
    """Rewrites every record's final message and traceback through `redact` before output.

    Never raises: a record whose arguments do not fit its format passes unchanged, and the
    handler then reports it as logging does, instead of the error reaching the caller.
    """

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # the handler's own error path reports it
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class InstanceFilter(logging.Filter):
    """Gives every record `instance_id` (INSTANCE_ID), which the format ends each line with.

    With several instances behind one log collector, each line says which one wrote it.
    """

    def __init__(self, instance_id: str) -> None:
        super().__init__()
        self.instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.instance_id = self.instance_id
        return True


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s instance_id=%(instance_id)s"


def configure_logging(level: str = "INFO", *, instance_id: str = "-") -> None:
    """One stderr handler on the root logger, with redaction and the instance id on every
    line; uvicorn's loggers propagate to it."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%dT%H:%M:%S"))
    handler.addFilter(InstanceFilter(instance_id))
    handler.addFilter(RedactingFilter())
    handler.set_name("edge-bridge")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "edge-bridge"] + [handler]
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        uvicorn_logger.propagate = True
