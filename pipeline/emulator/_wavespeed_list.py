"""WaveSpeed's prediction listing: ``POST /api/v3/predictions``.

Body ``{page >= 1 (default 1), page_size 1..100 (default 20), model?, status?
(completed | failed | processing), created_after?, created_before? (ISO 8601)}`` ->
``{code: 200, message, data: {page, total, items: [prediction, ...]}}``, newest first.
Items are predictions as a poll shows them (fresh image URLs), *without* the request's
input, like the real API. Only tasks within retention are listed (the last 7 days by
default: deleted tasks are gone from the listing).

Filters: ``model`` is the exact model id (``kwaivgi/kling-image-o3/text-to-image`` or
``.../edit``); ``status`` is the wire status, ``processing`` also matching ``created``
(queued: the documented filter values have no other way to ask for unfinished tasks),
``failed`` also matching ``cancelled`` and ``timeout``; ``created_after`` is inclusive,
``created_before`` exclusive; a time without a zone is UTC. A bad field -> 400.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from pipeline.emulator._gate import Kind, admit
from pipeline.emulator._state import STATE_KEY
from pipeline.emulator._tasks import Phase, Task
from pipeline.emulator._wavespeed_wire import PROVIDER, envelope, prediction, status_of
from pipeline.emulator._wire import InvalidInput, json_reply, read_object

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
STATUS_FILTERS: dict[str, frozenset[str]] = {
    "completed": frozenset({"completed"}),
    "failed": frozenset({"failed", "cancelled", "timeout"}),
    "processing": frozenset({"created", "processing"}),
}


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A validated listing request (times in epoch seconds)."""

    page: int = 1
    page_size: int = DEFAULT_PAGE_SIZE
    model: str | None = None
    statuses: frozenset[str] | None = None
    created_after: float | None = None
    created_before: float | None = None

    def accepts(self, task: Task, phase: Phase) -> bool:
        """Whether ``task`` (in ``phase``, not deleted) passes every filter."""
        if self.model is not None and task.model != self.model:
            return False
        if self.statuses is not None and status_of(task, phase) not in self.statuses:
            return False
        if self.created_after is not None and task.created_wall < self.created_after:
            return False
        return self.created_before is None or task.created_wall < self.created_before


def _int(body: dict[str, Any], name: str, default: int, high: int | None) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(f"{name} must be an integer >= 1")
    if high is not None and value > high:
        raise InvalidInput(f"{name} must be at most {high}")
    return value


def _time(body: dict[str, Any], name: str) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be an ISO 8601 time")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{name} must be an ISO 8601 time, got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_query(body: dict[str, Any]) -> ListQuery:
    """Validate a listing body (unknown fields ignored). Raises ``InvalidInput``."""
    model = body.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidInput("model must be a model id")
    status = body.get("status")
    if status is not None and status not in STATUS_FILTERS:
        raise InvalidInput(f"status must be one of {', '.join(STATUS_FILTERS)}")
    return ListQuery(
        page=_int(body, "page", 1, None),
        page_size=_int(body, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE),
        model=model,
        statuses=None if status is None else STATUS_FILTERS[status],
        created_after=_time(body, "created_after"),
        created_before=_time(body, "created_before"),
    )


async def list_predictions(request: web.Request) -> web.StreamResponse:
    """``POST /api/v3/predictions``: one page of the account's recent predictions."""
    state = request.app[STATE_KEY]
    adm = await admit(state, request, PROVIDER, Kind.POLL)
    if adm.reply is not None:
        return adm.reply
    try:
        query = parse_query(await read_object(request))
    except InvalidInput as exc:
        return state.error(PROVIDER, 400, exc.message)
    now = state.clock()
    matched: list[tuple[Task, Phase]] = []
    for task in reversed(list(state.store.tasks(PROVIDER))):
        phase = task.phase(now)
        if phase is not Phase.DELETED and query.accepts(task, phase):
            matched.append((task, phase))
    start = (query.page - 1) * query.page_size
    origin = str(request.url.origin())
    items = []
    for task, phase in matched[start : start + query.page_size]:
        state.counters[PROVIDER].record_shown(task, state.clock(), phase.terminal)
        items.append(prediction(state, task, phase, origin))
    data = {"page": query.page, "total": len(matched), "items": items}
    return adm.finish(state, request, PROVIDER, json_reply(envelope(data)))
