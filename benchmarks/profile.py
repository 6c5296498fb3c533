"""Figure 2's profile: a py-spy sampling profile of one pipeline run, summarised.

py-spy samples every thread of the child from outside, 250 times a second, without
instrumenting it (it pauses the child for each sample: ``--nonblocking`` would not, but
its stacks come out garbled). Its raw output is one
line per distinct stack, ``frame;frame;...;frame COUNT``. Dropped: samples whose
innermost frame is a wait (a worker thread idle on its queue, the event loop in
``select``), and the event loop thread's samples outside the event loop (interpreter
start and imports, which the timed run does not include). The rest is where the CPU
went, split by thread (the event loop's thread, the worker threads) and by function:
*self* (the innermost frame) and *inclusive* (anywhere on the stack), for the
pipeline's own functions.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

TOP = 15
# Innermost frames of a thread that is waiting, not working.
_IDLE = (
    "Condition.wait (threading.py",
    "_worker (concurrent/futures/thread.py",
    "EpollSelector.select (selectors.py",
    "select (selectors.py",
    "Event.wait (threading.py",
)
_LINE = re.compile(r":\d+\)$")
_EVENT_LOOP = "(anyio/_core/_eventloop.py"


def py_spy_argv(output: Path, argv: list[str]) -> list[str]:
    """``argv`` run under py-spy (the one installed next to this interpreter)."""
    py_spy = str(Path(sys.executable).parent / "py-spy")
    return [
        py_spy, "record", "--rate", "250", "--format", "raw", "--threads",
        "--output", str(output), "--", *argv,
    ]  # fmt: skip


@dataclass(slots=True)
class Profile:
    """Active samples of one run: by thread, by innermost function, by any function."""

    samples: int = 0
    idle: int = 0
    outside: int = 0  # the main thread before or after the event loop ran
    event_loop: int = 0
    self_time: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    def share(self, n: int) -> str:
        return f"{100 * n / max(1, self.samples):5.1f}%"

    def summary(self) -> dict[str, list[str]]:
        ours = [(k, n) for k, n in self.inclusive.most_common() if "pipeline/" in k][:TOP]
        return {
            "threads": [
                f"{self.samples} active samples ({self.idle} idle and {self.outside} before or "
                f"after the event loop dropped): event loop "
                f"thread {self.share(self.event_loop)}, worker threads "
                f"{self.share(self.samples - self.event_loop)}"
            ],
            "inclusive_pipeline": [f"{self.share(n)}  {k}" for k, n in ours],
            "self": [f"{self.share(n)}  {k}" for k, n in self.self_time.most_common(TOP)],
        }


def read_raw(path: Path) -> Profile:
    """Parse py-spy's raw (collapsed stacks) output."""
    prof = Profile()
    stacks: list[tuple[list[str], int]] = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    # The main thread: the one running the program's module (py-spy names it only once
    # the threading module has, so its label is not enough).
    main_thread = {
        _thread_id(f[0]) for f, _ in stacks if any("_run_module_as_main" in x for x in f)
    }
    for frames, n in stacks:
        if frames[-1].startswith(_IDLE):
            prof.idle += n
            continue
        main = _thread_id(frames[0]) in main_thread
        if main and not any(_EVENT_LOOP in f for f in frames):
            prof.outside += n
            continue
        prof.samples += n
        if main:
            prof.event_loop += n
        names = [_LINE.sub(")", f) for f in frames[1:]]
        if names:
            prof.self_time[names[-1]] += n
        for name in set(names):
            prof.inclusive[name] += n
    return prof


def _thread_id(label: str) -> str:
    """``thread (8534): MainThread`` -> ``8534``."""
    return label.partition("(")[2].partition(")")[0]
