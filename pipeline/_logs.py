"""Run logs: ``DIR/run.log`` (everything), stderr (warnings and up, when asked), secrets
redacted.

Every record passes a filter that replaces any secret in use (the API keys) by ``***``
and masks ``Authorization`` header values, so a key can reach neither the terminal nor
the file, whatever a library or an error message puts into a log line.

A run logs through a logger of its own (not registered with ``logging``, so it changes no
process-wide configuration), current for the run's tasks through a context variable.
Its records are also handed to the standard ``pipeline`` logger when the application has
configured a handler for it (or for the root logger): a library user sees the run's log
in their own logging, and a user who configured nothing sees nothing printed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

LOGGER_NAME = "pipeline"
_AUTH = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+")


class RedactSecrets(logging.Filter):
    """Rewrites each record's final message with secrets masked."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return _AUTH.sub(r"\1***", text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


class _CurrentStderr(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (rich's live display swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


class _ToApplication(logging.Handler):
    """Hands records to the standard ``pipeline`` logger, if anyone listens there."""

    def emit(self, record: logging.LogRecord) -> None:
        public = logging.getLogger(LOGGER_NAME)
        if public.hasHandlers() and public.isEnabledFor(record.levelno):
            public.handle(record)


_current: ContextVar[logging.Logger | None] = ContextVar("pipeline_run_logger", default=None)


def get_logger() -> logging.Logger:
    """The current run's logger (outside a run: the standard ``pipeline`` logger)."""
    return _current.get() or logging.getLogger(LOGGER_NAME)


class _RunLog(logging.FileHandler):
    """run.log: a record it cannot write (a full disk) is dropped, without the traceback
    logging would print; the run itself reports what failed."""

    def handleError(self, record: logging.LogRecord) -> None:
        return None


@contextmanager
def run_logging(
    directory: Path, secrets: Iterable[str], *, stderr: bool = False
) -> Iterator[logging.Logger]:
    """The logger of one run, writing ``directory/run.log`` (and warnings to stderr when
    ``stderr``), current for the block."""
    logger = logging.Logger(f"{LOGGER_NAME}.run", logging.DEBUG)
    redact = RedactSecrets(secrets)
    directory.mkdir(parents=True, exist_ok=True)
    file_handler = _RunLog(directory / "run.log", encoding="utf-8")
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    handlers: list[logging.Handler] = [file_handler, _ToApplication()]
    if stderr:
        err_handler = _CurrentStderr(logging.WARNING)
        err_handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        handlers.append(err_handler)
    for h in handlers:
        h.addFilter(redact)
        logger.addHandler(h)
    token = _current.set(logger)
    try:
        yield logger
    finally:
        _current.reset(token)
        for h in handlers:
            logger.removeHandler(h)
            h.close()
