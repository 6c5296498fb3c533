"""Job ids: each job's base id made final, unique and of bounded length.

A base id is ``<prompt id>--<slug of each variant value>`` (axes first, then vars), or
just the prompt id when nothing varies. Slugs are lower-case ``[a-z0-9-]`` with ``:``
spelt ``x`` (``16:9`` -> ``16x9``). Ids that collide (ignoring case, for case-insensitive
file systems) or exceed :data:`MAX_ID` characters get ``-`` and 8 hex digits of a SHA-256
of the job's resolved parameters, so they stay stable across loads.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import replace

from pipeline.jobs import Job

MAX_ID = 120
_HASH_LEN = 8
_IDS_AT_ONCE = 4096  # ids checked at a time by _all_final


def _digest(job: Job) -> str:
    body = {
        "prompt_id": job.prompt_id,
        "provider": job.provider,
        "prompt": job.prompt,
        "params": job.params.as_dict(),
        "variant": job.variant,
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _with_hash(base: str, job: Job, length: int = _HASH_LEN) -> str:
    head = base[: MAX_ID - length - 1].rstrip("-.")
    return f"{head}-{_digest(job)[:length]}"


def _all_final(drafts: list[Job]) -> bool:
    """Whether every base id is final: none too long, no two the same ignoring case.

    The set holds the ids themselves where folding leaves them as they are (nearly all of
    a large batch's), so checking a million ids costs the set's table and no new strings.
    """
    seen: set[str] = set()
    for start in range(0, len(drafts), _IDS_AT_ONCE):
        ids = [job.id for job in drafts[start : start + _IDS_AT_ONCE]]
        if max(map(len, ids)) > MAX_ID:
            return False
        joined = "".join(ids)
        if joined.casefold() == joined:  # casefold maps each character on its own
            before = len(seen)
            seen.update(ids)
            if len(seen) != before + len(ids):
                return False
            continue
        for job_id in ids:
            key = job_id.casefold()
            if key in seen:
                return False
            seen.add(job_id if key == job_id else key)
    return True


def assign_ids(drafts: list[Job]) -> list[Job]:
    """Give each draft (whose ``id`` holds its base id) its final, unique id."""
    if _all_final(drafts):
        return drafts
    folded = [job.id.casefold() for job in drafts]
    counts = Counter(folded)
    ids = [
        _with_hash(job.id, job) if len(job.id) > MAX_ID or counts[key] > 1 else job.id
        for job, key in zip(drafts, folded, strict=True)
    ]
    # A hashed id can only clash with another id if two jobs are identical or a prompt id
    # happens to end in the same hex digits; a counter keeps ids unique even then.
    seen: set[str] = set()
    final: list[Job] = []
    for job, job_id in zip(drafts, ids, strict=True):
        unique, k = job_id, 1
        while unique.casefold() in seen:
            k += 1
            unique = f"{_with_hash(job.id, job)}-{k}"
        seen.add(unique.casefold())
        final.append(job if unique == job.id else replace(job, id=unique))
    return final
