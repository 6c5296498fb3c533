"""The checks every API request passes before its handler: faults, auth, limits.

Order (as a gateway in front of the real APIs would apply them): count the request,
maybe stall (``slow``), maybe drop the connection (``reset``), authenticate, check the
key's permission (``permission_denied``, submits), rate-limit (``max_rps``, then random
``rate_429``), then inject 5xx on submits and polls. What a submit's reply is to suffer
once its task exists (reset, broken JSON, 202) travels to the handler in
:class:`Admission`; the handler calls :meth:`Admission.created` once it made the task
(the evenly spread ``lost_reply`` counts created tasks).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from aiohttp import web

from pipeline.emulator._faults import chance, spaced
from pipeline.emulator._state import EmulatorState
from pipeline.emulator._wire import (
    PERMISSION_MESSAGE,
    bearer,
    drop_connection,
    malformed_reply,
    retry_after_header,
)

_5XX = (500, 502, 503, 504)


class Kind(enum.Enum):
    """What a request does, for counting and for which faults apply."""

    SUBMIT = "submit"
    POLL = "poll"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Admission:
    """The gate's verdict: an early ``reply``, or go on (with post-create faults)."""

    reply: web.StreamResponse | None = None
    reset_after: bool = False
    malformed: bool = False
    accepted: bool = False

    def created(self, state: EmulatorState, provider: str) -> Admission:
        """The verdict once the handler created its task (``lost_reply`` may drop it)."""
        rate = state.config.faults_for(provider).lost_reply
        if spaced(rate, state.counters[provider].submits):
            return replace(self, reset_after=True)
        return self

    def finish(
        self, state: EmulatorState, request: web.Request, provider: str, reply: web.Response
    ) -> web.StreamResponse:
        """The handler's successful ``reply``, unless a fault replaces it."""
        if self.reset_after:
            return drop_connection(request, state.counters[provider])
        if self.malformed:
            return malformed_reply()
        if self.accepted and reply.status == 200:
            reply.set_status(202)
        return reply


async def admit(state: EmulatorState, request: web.Request, provider: str, kind: Kind) -> Admission:
    """Run the common checks; an ``Admission`` with ``reply`` set ends the request."""
    counters = state.counters[provider]
    profile = state.config.faults_for(provider)
    rng = state.rng
    counters.requests += 1
    if kind is Kind.SUBMIT:
        counters.submit_requests += 1
    elif kind is Kind.POLL:
        counters.polls += 1

    if profile.slow_s > 0 and chance(rng, profile.slow_rate):
        await state.sleep(profile.slow_s)
    reset = chance(rng, profile.reset)
    if reset and (kind is not Kind.SUBMIT or profile.reset_before_create):
        return Admission(reply=drop_connection(request, counters))

    key = state.config.key_for(provider)
    token = bearer(request)
    if not token or (key is not None and token != key):
        return Admission(reply=state.error(provider, 401))
    if profile.auth_fail_after is not None and counters.requests > profile.auth_fail_after:
        return Admission(reply=state.error(provider, 401, "API key is inactive"))
    if kind is Kind.SUBMIT and chance(rng, profile.permission_denied):
        return Admission(reply=state.error(provider, 403, PERMISSION_MESSAGE))

    headers = retry_after_header(profile.retry_after)
    bucket = state.buckets[provider]
    if bucket is not None and not bucket.take(state.clock()):
        return Admission(reply=state.error(provider, 429, headers=headers))
    if chance(rng, profile.rate_429):
        return Admission(reply=state.error(provider, 429, headers=headers))

    rate_5xx = {Kind.SUBMIT: profile.submit_5xx, Kind.POLL: profile.poll_5xx}.get(kind, 0.0)
    if chance(rng, rate_5xx):
        return Admission(reply=state.error(provider, rng.choice(_5XX)))

    malformed = chance(rng, profile.malformed_json)
    accepted = kind is Kind.SUBMIT and chance(rng, profile.accepted_202)
    return Admission(reset_after=reset, malformed=malformed, accepted=accepted)


def over_image_limit(state: EmulatorState, provider: str, images: int) -> web.Response | None:
    """A 429 when creating ``images`` more now would exceed ``images_per_minute``, else
    ``None`` (and the images are counted: call it last before creating the task)."""
    window = state.windows[provider]
    if window is None or window.admit(images, state.clock()):
        return None
    headers = retry_after_header(state.config.faults_for(provider).retry_after)
    message = f"Rate limit exceeded: {window.limit} images per minute"
    return state.error(provider, 429, message, headers=headers)
