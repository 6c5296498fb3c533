"""Error mapping, pure: error-body and Retry-After parsers, HTTP status -> error class,
and the tolerant getters that turn ill-typed bodies into ``bad_response``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipeline.errors import (
    AuthError,
    InsufficientCredits,
    OutcomeUnknown,
    ProviderError,
    ProviderTimeout,
    RateLimited,
)
from pipeline.providers._body import MAX_MESSAGE_CHARS, ErrorBody, Fields, parse_error_body
from pipeline.providers._http import error_for_status, parse_retry_after


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


# --- parse_error_body -------------------------------------------------------------------


def test_wavespeed_error_body() -> None:
    """WaveSpeed's {code, message}: an integer code is spelled as text."""
    body = parse_error_body(_body({"code": 401, "message": "Invalid API key"}))
    assert body == ErrorBody(code="401", message="Invalid API key", structured=True)


def test_skills_error_body() -> None:
    """skills.video's {error, code, message}: code wins, message kept."""
    raw = _body({"error": "OLD", "code": "IMAGE_GENERATION_RATE_LIMITED", "message": "Slow down"})
    body = parse_error_body(raw)
    assert body.code == "IMAGE_GENERATION_RATE_LIMITED"
    assert body.message == "Slow down"


def test_error_field_as_code_and_message() -> None:
    """A body with only ``error`` uses it as the code and the message."""
    body = parse_error_body(_body({"error": "NOT_FOUND"}))
    assert (body.code, body.message) == ("NOT_FOUND", "NOT_FOUND")


def test_html_body_gives_its_title() -> None:
    """An HTML error page becomes its title, and is not the provider's structured body."""
    raw = b"<html><head><title>502 Bad Gateway</title></head><body><h1>nginx</h1></body></html>"
    body = parse_error_body(raw)
    assert body == ErrorBody(code=None, message="502 Bad Gateway", structured=False)


def test_html_without_title_is_stripped() -> None:
    """HTML without a title is reduced to its text, entities decoded."""
    body = parse_error_body(b"<p>Service &amp; stuff <b>down</b></p>")
    assert body.message == "Service & stuff down"


@pytest.mark.parametrize(
    "raw",
    [b"", b"null", b"[1, 2]", b"\xff\xfe\x00garbage", b'{"code": 5', b"[" * 50_000],
)
def test_unreadable_bodies_never_raise(raw: bytes) -> None:
    """Empty, non-object, non-UTF-8, truncated and absurdly nested bodies parse to no code."""
    body = parse_error_body(raw)
    assert body.code is None
    assert body.structured is False


def test_long_message_is_capped() -> None:
    """A huge message is cut to a readable length."""
    body = parse_error_body(_body({"code": 500, "message": "x" * 100_000}))
    assert body.message is not None
    assert len(body.message) == MAX_MESSAGE_CHARS


# --- parse_retry_after ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [("7", 7.0), (" 1.5 ", 1.5), ("0", 0.0), (None, None), ("", None), ("-3", None)],
)
def test_retry_after_seconds(header: str | None, expected: float | None) -> None:
    """Delta-seconds parse as floats; absent, empty and negative values give None."""
    assert parse_retry_after(header) == expected


def test_retry_after_http_date() -> None:
    """An HTTP date gives the seconds from now until then."""
    now = datetime(2015, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 30.0


def test_retry_after_date_in_the_past() -> None:
    """A date already past means no wait."""
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now) == 0.0


@pytest.mark.parametrize("header", ["soon", "inf", "nan", "Wed, 99 Foo 2015"])
def test_retry_after_invalid(header: str) -> None:
    """Anything else is ignored rather than trusted."""
    assert parse_retry_after(header) is None


# --- error_for_status -------------------------------------------------------------------


def _err(
    status: int, raw: bytes, *, creates_task: bool = False, retry_after: float | None = None
) -> ProviderError:
    return error_for_status(
        "skills_video",
        status,
        parse_error_body(raw),
        retry_after=retry_after,
        creates_task=creates_task,
    )


def test_402_is_insufficient_credits() -> None:
    """402 maps to InsufficientCredits with the provider's code, not retryable."""
    raw = _body(
        {
            "error": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
            "code": "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
            "message": "Insufficient credits",
        }
    )
    err = _err(402, raw)
    assert isinstance(err, InsufficientCredits)
    assert (err.http_status, err.code, err.retryable) == (
        402,
        "IMAGE_GENERATION_INSUFFICIENT_CREDITS",
        False,
    )


def test_insufficient_balance_text_on_400() -> None:
    """WaveSpeed's balance status is unknown: the body text alone marks it."""
    err = _err(400, _body({"code": 400, "message": "Insufficient balance, please top up"}))
    assert isinstance(err, InsufficientCredits)


@pytest.mark.parametrize("status", [401, 403])
def test_auth_statuses(status: int) -> None:
    """401 and 403 map to AuthError, not retryable."""
    err = _err(status, _body({"code": status, "message": "nope"}))
    assert isinstance(err, AuthError)
    assert not err.retryable


def test_422_content_rejected() -> None:
    """422 keeps the provider's code and is final."""
    raw = _body({"code": "IMAGE_GENERATION_CONTENT_REJECTED", "message": "flagged"})
    err = _err(422, raw)
    assert type(err) is ProviderError
    assert (err.code, err.retryable, err.message) == (
        "IMAGE_GENERATION_CONTENT_REJECTED",
        False,
        "flagged",
    )


def test_429_carries_retry_after() -> None:
    """429 maps to RateLimited with the parsed wait, retryable even for a submit."""
    raw = _body({"code": "IMAGE_GENERATION_RATE_LIMITED"})
    err = _err(429, raw, retry_after=2.5, creates_task=True)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 2.5
    assert err.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_provider_5xx_is_retryable(status: int) -> None:
    """A 5xx in the provider's own JSON shape is retryable, for polls and submits alike."""
    raw = _body({"error": "X", "code": "X", "message": "boom"})
    for creates_task in (False, True):
        err = _err(status, raw, creates_task=creates_task)
        assert type(err) is ProviderError
        assert err.retryable


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_5xx_on_submit_is_outcome_unknown(status: int) -> None:
    """A gateway's HTML 502/504 on a submit may hide a created task: OutcomeUnknown."""
    raw = b"<html><title>504 Gateway Time-out</title></html>"
    err = _err(status, raw, creates_task=True)
    assert isinstance(err, OutcomeUnknown)
    assert not err.retryable
    poll_err = _err(status, raw)
    assert type(poll_err) is ProviderError
    assert poll_err.retryable


def test_html_500_message_and_code() -> None:
    """An HTML 500 still yields a readable message and an http_<status> code."""
    err = _err(500, b"<html><title>Internal Server Error</title></html>")
    assert (err.code, err.message, err.retryable) == ("http_500", "Internal Server Error", True)


def test_404_and_400_are_final() -> None:
    """Client errors are not retryable."""
    for status in (400, 404):
        err = _err(status, b"")
        assert not err.retryable
        assert err.code == f"http_{status}"


def test_408_is_a_timeout() -> None:
    """408 means the provider gave up reading: a retryable timeout."""
    assert isinstance(_err(408, b""), ProviderTimeout)


# --- Fields -----------------------------------------------------------------------------


def test_fields_tolerant_getters() -> None:
    """Optional getters read what is there, coerce codes, and ignore the ill-typed."""
    f = Fields(
        {"a": "x", "code": 1403, "n": 3.0, "flag": True, "w": "12", "o": {"k": 1}, "l": [1]},
        provider="p",
    )
    assert f.opt_str("a") == "x"
    assert f.opt_str("code") == "1403"
    assert f.opt_str("flag") is None
    assert f.opt_int("n") == 3
    assert f.opt_int("flag") is None
    assert f.opt_int("w") is None
    assert f.opt_obj("o") is not None
    assert f.opt_obj("a") is None
    assert f.opt_list("l") == [1]
    assert f.opt_list("missing") is None


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda f: f.req_str("id"), "response.id is null"),
        (lambda f: f.req_str("status"), "response.status is int"),
        (lambda f: f.opt_list("outputs"), "response.outputs is str"),
        (lambda f: f.req_obj("data"), "response.data is null"),
        (lambda f: f.objects("items"), "response.items[1] is int"),
    ],
)
def test_fields_required_errors(call: Callable[[Fields], object], fragment: str) -> None:
    """Missing or ill-typed required fields raise a retryable bad_response naming the field."""
    f = Fields({"status": 3, "outputs": "u", "items": [{}, 7]}, provider="p")
    with pytest.raises(ProviderError) as info:
        call(f)
    assert info.value.code == "bad_response"
    assert info.value.retryable
    assert fragment in info.value.message


def test_fields_on_submit_raise_outcome_unknown() -> None:
    """An unreadable 200 to a submit is OutcomeUnknown: a task may exist."""
    with pytest.raises(OutcomeUnknown) as info:
        Fields([], provider="p", creates_task=True)
    assert info.value.code == "bad_response"
    assert not info.value.retryable
