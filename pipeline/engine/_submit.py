"""Creating a job's task: intent, submit, record, and the lost reply.

The write-ahead protocol (``pipeline.store``): the intent is committed before the submit
leaves the machine, the remote id right after the reply. A submit whose reply was lost
(``OutcomeUnknown``: sent, no answer) may have created, and charged, a task. It is never
sent again blindly; the provider is asked first (``reconcile``):

- skills.video lists its unfinished tasks with their (normalised) input: it is asked at
  once (a finished task leaves the list), and the one unclaimed task whose input matches
  the job is adopted.
- WaveSpeed lists every recent task, without its input. So the lane holds its next
  submits and waits for its other submits in flight to be answered: then the window from
  the lost submit (less ``CLOCK_SKEW_S``) to now holds this submit's task and no other
  of this process. The tasks created in it, less those already claimed by a job, less
  those that cannot be this job's (model, image count, format), are the candidates: one
  is adopted; none (asked ``LOOKS`` times: a listing may lag) proves that no task was
  created, so the job is sent again as it is; several cannot be told apart (another
  process on the same account submitted too): the job is sent again flagged
  ``possible_duplicate``, its estimated cost counted, and the candidates named with it.
- A provider that lists nothing: sent again flagged ``possible_duplicate``.

``claimed`` holds every remote id known to belong to a job (those in the state when the
run started, and each one recorded since): reconciliation never adopts one twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pipeline.clock import Clock, utcnow
from pipeline.engine._budget import Spending
from pipeline.engine._lane import Lane, Started
from pipeline.engine._outcome import provider_error
from pipeline.errors import BudgetExhausted, OutcomeUnknown
from pipeline.jobs import Flag, Job
from pipeline.providers.base import TaskStatus
from pipeline.store import RunStore

MAX_UNKNOWN_OUTCOMES = 2
CLOCK_SKEW_S = 30.0  # our clock against the provider's timestamps
LOOKS = 3  # a listing asked this often (LOOK_EVERY_S apart) before "no task" is believed
LOOK_EVERY_S = 1.0
UNKNOWN_SINCE_S = 3600.0  # an intent without a time: look back this far


@dataclass(frozen=True, slots=True)
class Finding:
    """What the provider said of a lost submit: the task adopted, or ``proof`` that none
    was created, or the ``candidates`` that could be it."""

    status: TaskStatus | None = None
    proof_of_none: bool = False
    candidates: tuple[str, ...] = ()


class Submitter:
    """Creates tasks for the scheduler (see the module note)."""

    def __init__(
        self,
        *,
        state: RunStore,
        budget: Spending,
        clock: Clock,
        claimed: set[str],
        changed: Callable[[], None],
        stop: Callable[[str], None],
    ) -> None:
        self.state = state
        self.budget = budget
        self.clock = clock
        self.claimed = claimed
        self._changed = changed
        self._stop = stop

    async def start(
        self, lane: Lane, job: Job, *, unknown: bool, since: float | None, submit_by: float
    ) -> Started | None:
        """The job's task: an earlier submit's (``unknown``: its outcome was never
        recorded, ``since`` when it was sent), or a new one (streamed where the lane
        streams). None: left for later (a budget stop, unknown outcomes again and again,
        or the lease is another's now). The caller closes ``Started.frames``."""
        duplicate: tuple[str, ...] | None = None
        if unknown:
            found = await self.reconcile(lane, job, since)
            if found.status is not None:
                return Started(found.status)
            duplicate = None if found.proof_of_none else found.candidates
        return await self._submit(lane, job, duplicate=duplicate, submit_by=submit_by)

    async def _submit(
        self, lane: Lane, job: Job, *, duplicate: tuple[str, ...] | None, submit_by: float
    ) -> Started | None:
        """Intent, submit, record; ``duplicate``: the job may have a task already (the ids
        that could be it), so sending it again may charge twice."""
        for _ in range(MAX_UNKNOWN_OUTCOMES + 1):
            if duplicate is not None and not await self._count_duplicate(lane, job, duplicate):
                return None
            if not await self.state.mark_intent(job.id, utcnow()):
                return None  # the lease was taken over: the job is someone else's now
            sent = self.clock.wall()
            try:
                if lane.streams:
                    started = await lane.submit_streamed(job, deadline=submit_by)
                else:
                    started = Started(await lane.submit(job, deadline=submit_by))
            except OutcomeUnknown as exc:
                await self.state.note_error(job.id, provider_error(exc))
                found = await self.reconcile(lane, job, sent)
                if found.status is not None:
                    return Started(found.status)
                duplicate = None if found.proof_of_none else found.candidates
                continue
            try:
                await self.record(job, started.status)
            except BaseException:
                await started.aclose()
                raise
            return started
        return None

    async def record(self, job: Job, status: TaskStatus) -> None:
        """The reply's remote id, committed before anything else happens."""
        await self.state.mark_submitted(job.id, status.remote_id, utcnow(), status.usage)
        self.claimed.add(status.remote_id)
        self._changed()

    async def _count_duplicate(self, lane: Lane, job: Job, candidates: tuple[str, ...]) -> bool:
        """Flag the job ``possible_duplicate`` and count its estimated cost as spent
        (naming the tasks that could be the first one). False: that reached the budget."""
        estimate = lane.adapter.spec.estimate(job.params, lane.settings.usd_per_credit)
        await self.state.add_flag(job.id, Flag.POSSIBLE_DUPLICATE)
        await self.state.add_duplicate_cost(
            job.id, estimate.usd or 0.0, estimate.credits or 0.0, candidates
        )
        try:
            await self.budget.charge_unknown(estimate, lane.name)
        except BudgetExhausted as exc:
            self._stop(str(exc))
            return False
        return True

    async def reconcile(self, lane: Lane, job: Job, since: float | None) -> Finding:
        """Ask the provider for the task an unrecorded submit (sent at ``since``, epoch
        seconds) created; adopt it when it can be told apart (the module note)."""
        spec = lane.adapter.spec
        if spec.lists_unfinished:
            found = await lane.find_submitted(job, self.claimed)
            if found is not None:
                await self._adopt(job, found)
            return Finding(status=found)
        if not spec.lists_recent:
            return Finding()
        start = (since if since is not None else self.clock.wall() - UNKNOWN_SINCE_S) - (
            CLOCK_SKEW_S
        )
        async with lane.holding():  # no other submit of ours in the window
            for look in range(LOOKS):
                if look:
                    await self.clock.sleep(LOOK_EVERY_S)
                listed = await lane.list_recent(job, since=start, exclude=self.claimed)
                if listed is None:
                    return Finding()  # the listing did not answer
                if len(listed) == 1:
                    await self._adopt(job, listed[0])
                    return Finding(status=listed[0])
                if listed:
                    return Finding(candidates=tuple(t.remote_id for t in listed))
        return Finding(proof_of_none=True)

    async def _adopt(self, job: Job, found: TaskStatus) -> None:
        self.claimed.add(found.remote_id)
        await self.state.mark_submitted(job.id, found.remote_id, utcnow(), found.usage)
        await self.state.add_flag(job.id, Flag.RECONCILED)
        self._changed()
