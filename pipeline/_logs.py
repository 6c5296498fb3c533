"""Run logs: stderr (warnings and up) and ``DIR/run.log`` (everything), secrets redacted.

Every record passes a filter that replaces any secret in use (the API keys) by ``***``
and masks ``Authorization`` header values, so a key can reach neither the terminal nor
the file, whatever a library or an error message puts into a log line.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
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


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


@contextmanager
def run_logging(
    directory: Path, secrets: Iterable[str], *, stderr_level: int = logging.WARNING
) -> Iterator[logging.Logger]:
    """Attach the stderr and ``run.log`` handlers for the duration of one run."""
    logger = get_logger()
    redact = RedactSecrets(secrets)
    directory.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(directory / "run.log", encoding="utf-8")
    file_handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S")
    )
    file_handler.setLevel(logging.DEBUG)
    err_handler = _CurrentStderr()
    err_handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    err_handler.setLevel(stderr_level)
    handlers: list[logging.Handler] = [file_handler, err_handler]
    for h in handlers:
        h.addFilter(redact)
        logger.addHandler(h)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        yield logger
    finally:
        for h in handlers:
            logger.removeHandler(h)
            h.close()
        logger.setLevel(previous)
