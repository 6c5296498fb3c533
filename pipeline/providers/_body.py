"""Reading provider bodies: tolerant typed getters, and the shape of error answers.

Providers add fields, drop optional ones and occasionally send the wrong type. Adapters read
bodies only through :class:`Fields`, so unknown fields are ignored, optional fields that are
missing or ill-typed read as ``None``, and a missing or ill-typed *required* field becomes a
``ProviderError(code="bad_response")`` with a clear message: never a ``KeyError`` or
``TypeError``.

A bad answer to a submit is an :class:`~pipeline.errors.OutcomeUnknown` (the provider said
200, so a task may exist and be charged); a bad answer to a poll is retryable.

Error answers (4xx/5xx) are read by :func:`parse_error_body` into an :class:`ErrorBody`,
whatever they hold: JSON of either provider's shape, HTML from a gateway, or nothing.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

from pipeline.errors import OutcomeUnknown, ProviderError

BAD_RESPONSE = "bad_response"
MAX_MESSAGE_CHARS = 300


def bad_response(provider: str, message: str, *, creates_task: bool) -> ProviderError:
    """The error for an unreadable 2xx body (see the module docstring for which class)."""
    if creates_task:
        return OutcomeUnknown(message, provider=provider, code=BAD_RESPONSE, http_status=200)
    return ProviderError(
        message, provider=provider, code=BAD_RESPONSE, http_status=200, retryable=True
    )


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


class Fields:
    """A read-only view of one JSON object with typed getters.

    ``where`` names the object in error messages (``"response"``, ``"response.data"``).
    Raises ``ProviderError(code="bad_response")`` (see :func:`bad_response`) when the value
    is not an object or a required field is missing or has the wrong type.
    """

    __slots__ = ("_creates_task", "_data", "_provider", "_where")

    def __init__(
        self, data: object, *, provider: str, where: str = "response", creates_task: bool = False
    ) -> None:
        self._provider = provider
        self._where = where
        self._creates_task = creates_task
        if not isinstance(data, dict):
            raise self.error(f"{where} is {_type_name(data)}, expected an object")
        self._data: dict[str, Any] = data

    def __repr__(self) -> str:
        return f"Fields({self._where}, keys={sorted(self._data)})"

    @property
    def raw(self) -> dict[str, Any]:
        """The object itself (for fields kept verbatim, e.g. ``usage``)."""
        return self._data

    def error(self, message: str) -> ProviderError:
        """A ``bad_response`` error about this object."""
        return bad_response(self._provider, message, creates_task=self._creates_task)

    def child(self, value: object, where: str) -> Fields:
        """Wrap a nested value as an object, with the same error rules as this one."""
        return Fields(value, provider=self._provider, where=where, creates_task=self._creates_task)

    def req_str(self, key: str) -> str:
        """A required non-empty string field."""
        value = self._data.get(key)
        if not isinstance(value, str) or not value:
            raise self.error(
                f"{self._where}.{key} is {_type_name(value)}, expected a non-empty string"
            )
        return value

    def opt_str(self, key: str) -> str | None:
        """An optional text field; numbers are spelled as text (error codes come as both)."""
        value = self._data.get(key)
        if isinstance(value, str):
            return value or None
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return None

    def opt_int(self, key: str) -> int | None:
        """An optional integer field (integral floats accepted)."""
        value = self._data.get(key)
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return None

    def opt_obj(self, key: str) -> Fields | None:
        """An optional nested object; ``None`` when missing, null or not an object."""
        value = self._data.get(key)
        if not isinstance(value, dict):
            return None
        return self.child(value, f"{self._where}.{key}")

    def req_obj(self, key: str) -> Fields:
        """A required nested object."""
        found = self.opt_obj(key)
        if found is None:
            value = self._data.get(key)
            raise self.error(f"{self._where}.{key} is {_type_name(value)}, expected an object")
        return found

    def opt_list(self, key: str) -> list[Any] | None:
        """An optional list; ``None`` when missing or null. Raises if present but not a list."""
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.error(f"{self._where}.{key} is {_type_name(value)}, expected a list")
        return value

    def objects(self, key: str) -> list[Fields] | None:
        """An optional list of objects; raises if any item is not an object."""
        items = self.opt_list(key)
        if items is None:
            return None
        return [self.child(item, f"{self._where}.{key}[{i}]") for i, item in enumerate(items)]


@dataclass(frozen=True, slots=True)
class ErrorBody:
    """What an error response said: the provider's code and message, when it gave them.

    ``structured`` is true when the body was the provider's JSON error object.
    """

    code: str | None
    message: str | None
    structured: bool


def text_snippet(raw: bytes) -> str | None:
    """Short readable text of a non-JSON body (an HTML page's title, else its text)."""
    text = raw.decode("utf-8", errors="replace")
    if "<" in text and ">" in text:
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.IGNORECASE | re.DOTALL)
        text = title.group(1) if title else re.sub(r"<[^>]*>", " ", text)
        text = html.unescape(text)
    text = " ".join(text.split())
    return text[:MAX_MESSAGE_CHARS] or None


def parse_error_body(raw: bytes) -> ErrorBody:
    """Read the providers' error objects: WaveSpeed ``{code, message}`` (or ``{message,
    error_code}``, as its official CLI reads them), skills.video ``{error, code,
    message}`` (``error`` does not always repeat ``code``: ``code`` wins) or the older
    ``{error, message}``.

    Tolerates empty, non-JSON, HTML and truncated bodies: their text becomes the message.
    Never raises.
    """
    try:
        decoded: object = json.loads(raw)
    except (ValueError, RecursionError):
        return ErrorBody(code=None, message=text_snippet(raw), structured=False)
    if not isinstance(decoded, dict):
        return ErrorBody(code=None, message=text_snippet(raw), structured=False)
    code: str | None = None
    for key in ("code", "error_code", "error"):
        value = decoded.get(key)
        if isinstance(value, str) and value:
            code = value
            break
        if isinstance(value, int) and not isinstance(value, bool):
            code = str(value)
            break
    message = decoded.get("message")
    if not isinstance(message, str) or not message:
        error = decoded.get("error")
        message = error if isinstance(error, str) and error else None
    if message is not None:
        message = " ".join(message.split())[:MAX_MESSAGE_CHARS]
    return ErrorBody(code=code, message=message, structured=True)
