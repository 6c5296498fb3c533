"""Figure 3: rate-limit fidelity against an emulator that enforces 20 requests/s.

The pipeline (its own process, one provider, 20 requests/s configured) runs jobs for
about 15 s of requests. The driver samples the emulator's request counter every
``SAMPLE_S`` meanwhile: the achieved rate is the requests between the first sample that
saw one and the first that saw the last, over the time between them (so process start,
ledger writes and downloads after the last API request are not counted against it).
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable

from benchmarks.emulator_proc import EmulatorProcess, EmulatorSetup
from benchmarks.procs import python_module, run_child
from benchmarks.results import Figure, at_least, at_most
from benchmarks.workload import PROVIDERS, Workload, WorkResult

RPS = 20.0
TARGET = 0.97
SAMPLE_S = 0.01
REQUESTS_PER_JOB = 2  # submit + one poll: the zero-latency emulator completes at once


def _sample(emu: EmulatorProcess, stop: threading.Event, out: list[tuple[float, int]]) -> None:
    while not stop.is_set():
        stats = emu.stats()
        total = sum(stats.for_provider(p).requests for p in PROVIDERS)
        out.append((time.perf_counter(), total))
        time.sleep(SAMPLE_S)


def achieved_rate(samples: list[tuple[float, int]]) -> tuple[float, int, float]:
    """(requests per second, requests counted, seconds) over the sampled span.

    Raises ``ValueError`` if fewer than two samples saw requests.
    """
    final = samples[-1][1]
    first = next((t, n) for t, n in samples if n > 0)
    last = next((t, n) for t, n in samples if n == final)
    if last[0] <= first[0]:
        raise ValueError("too few samples to measure a rate")
    return (last[1] - first[1]) / (last[0] - first[0]), last[1] - first[1], last[0] - first[0]


def measure(seconds: float, log: Callable[[str], None]) -> list[Figure]:
    """Figure 3: achieved / allowed rate, and the 429s the emulator sent."""
    jobs = round(seconds * RPS / REQUESTS_PER_JOB)
    setup = EmulatorSetup(max_rps=RPS)
    samples: list[tuple[float, int]] = []
    with EmulatorProcess(setup) as emu, tempfile.TemporaryDirectory() as out:
        w = Workload(
            mode="pipeline",
            base_url=emu.base_url,
            out_dir=out,
            jobs=jobs,
            providers=("wavespeed",),
            rps=RPS,
        )
        stop = threading.Event()
        sampler = threading.Thread(target=_sample, args=(emu, stop, samples))
        sampler.start()
        try:
            child = run_child(python_module("benchmarks.worker", w.model_dump_json()))
        finally:
            stop.set()
            sampler.join()
        stats = emu.stats().for_provider("wavespeed")
    if child.exit_code != 0:
        raise RuntimeError(f"rate run failed:\n{child.stderr[-3000:]}")
    result = WorkResult.model_validate_json(child.stdout.strip().splitlines()[-1])
    rate, counted, span = achieved_rate(samples)
    log(
        f"  {jobs} jobs ({result.completed} completed): {stats.requests} API requests, "
        f"{counted} in {span:.2f} s = {rate:.2f}/s of {RPS:g}/s allowed; "
        f"{stats.rate_limited} answered 429; run took {result.seconds:.2f} s"
    )
    details = {
        "jobs": jobs,
        "completed": result.completed,
        "requests": stats.requests,
        "span_s": span,
        "achieved_rps": rate,
        "allowed_rps": RPS,
    }
    return [
        at_least(
            "rate_fidelity",
            f"3. achieved / allowed at {RPS:g} req/s",
            rate / RPS,
            "",
            TARGET,
            details=details,
        ),
        at_most("rate_429s", "3. 429 answers from the emulator", stats.rate_limited, "", 0),
    ]
