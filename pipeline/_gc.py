"""The one place that steers the cyclic garbage collector.

A batch of 100k jobs holds millions of small objects that live for the whole command: the
manifest's jobs, the state's records. The collector would rescan all of them again and
again and find no garbage (a third of a resume's time, measured). So:

- ``paused()`` while building many long-lived objects (loading a manifest, reading the
  state); with ``keep=True`` what was built moves to the oldest generation on the way
  out, so young collections stop rescanning it;
- ``frozen()`` for the length of a run: everything that exists when the run starts is
  hidden from the collector until it ends;
- ``spare_at_exit()`` in the command line only: what a command built dies with the
  process, so its final collection need not walk it.

Each restores the collector's state when it ends; only cycles wait longer to be freed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused(*, keep: bool = False) -> Iterator[None]:
    """Pause collections for the block (nested pauses are no-ops). ``keep``: what was
    built lives on; promote it to the oldest generation (not while objects are frozen:
    the unfreeze it takes would release them)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
        if keep and gc.get_freeze_count() == 0:
            gc.freeze()  # every tracked object to the permanent generation,
            gc.unfreeze()  # and back into the oldest one: no scan either way
    finally:
        gc.enable()


@contextmanager
def frozen() -> Iterator[None]:
    """Hide every object that exists now from the collector until the block ends."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def spare_at_exit() -> None:
    """The process is about to exit: spare its last collection the walk over everything."""
    gc.freeze()
