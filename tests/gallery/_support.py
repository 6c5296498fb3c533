"""A hand-written batch folder (ledger.json + real image files) for the report tests."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from PIL import Image

EVIL_PROMPT = "<script>alert('x')</script> & \"quotes\" see https://evil.example/x.png"
SWEEP_STYLES = ("oil painting", "pixel art")
SWEEP_RATIOS = ("1:1", "16:9")
SWEEP_PROVIDERS = ("wavespeed", "skills_video")
_SIZES = {"1:1": (384, 384), "16:9": (512, 288)}


def job(
    job_id: str,
    *,
    prompt_id: str,
    prompt: str = "a prompt",
    variant: dict[str, str] | None = None,
    status: str = "completed",
    n: int = 1,
    provider: str = "wavespeed",
    aspect_ratio: str = "1:1",
    error: dict[str, Any] | None = None,
    latency_s: float | None = 1.5,
    flags: list[str] | None = None,
) -> dict[str, Any]:
    """One ledger job entry; completed jobs list ``n`` images under images/."""
    images = (
        [
            {"path": f"images/{job_id}-{k}.png", "sha256": "0" * 64, "bytes": 1, "format": "png"}
            for k in range(1, n + 1)
        ]
        if status == "completed"
        else []
    )
    entry: dict[str, Any] = {
        "id": job_id,
        "provider": provider,
        "model": "kling-image-o3",
        "prompt_id": prompt_id,
        "prompt": prompt,
        "params": {
            "aspect_ratio": aspect_ratio,
            "resolution": "1k",
            "output_format": "png",
            "n": n,
        },
        "variant": variant if variant is not None else {},
        "status": status,
        "remote_id": None if status == "pending" else f"r-{job_id}",
        "attempts": 0 if status == "pending" else 1,
        "latency_s": latency_s if status == "completed" else None,
        "images": images,
        "cost": (
            {
                "usd": 0.028 * n,
                "credits": 20.0 * n if provider == "skills_video" else None,
                "basis": "price_table",
            }
            if status == "completed"
            else None
        ),
        "usage": {},
        "error": error,
    }
    if flags:
        entry["flags"] = flags
    return entry


def sweep_jobs() -> list[dict[str, Any]]:
    """2 prompts x 2 styles x 2 aspect ratios x 2 providers, with one failed job, one
    pending, one submitted, one of n=2, and a superseded leftover."""
    jobs = []
    i = 0
    for prompt_id, text in (("lighthouse", "A lighthouse, {style}"), ("evil", EVIL_PROMPT)):
        for style in SWEEP_STYLES:
            for ratio in SWEEP_RATIOS:
                for provider in SWEEP_PROVIDERS:
                    i += 1
                    variant = {"aspect_ratio": ratio, "provider": provider, "style": style}
                    jobs.append(
                        job(
                            f"{prompt_id}--{ratio.replace(':', 'x')}-{provider}-{style[:3]}",
                            prompt_id=prompt_id,
                            prompt=text.replace("{style}", style),
                            variant=variant,
                            provider=provider,
                            aspect_ratio=ratio,
                            latency_s=0.5 + 0.25 * i,
                        )
                    )
    jobs[1] = job(
        jobs[1]["id"],
        prompt_id="lighthouse",
        prompt=jobs[1]["prompt"],
        variant=jobs[1]["variant"],
        provider="skills_video",
        status="failed",
        error={
            "code": "task_failed",
            "message": "Image generation <failed> & gone",
            "http_status": 200,
            "provider_code": "IMAGE_GENERATION_FAILED",
        },
    )
    jobs[2] = job(
        jobs[2]["id"],
        prompt_id="lighthouse",
        prompt=jobs[2]["prompt"],
        variant=jobs[2]["variant"],
        aspect_ratio="16:9",
        status="pending",
    )
    jobs[3] = {**jobs[3], "status": "submitted", "images": [], "cost": None, "latency_s": None}
    jobs[4] = job(
        jobs[4]["id"],
        prompt_id="lighthouse",
        prompt=jobs[4]["prompt"],
        variant=jobs[4]["variant"],
        n=2,
        flags=["redownloaded"],
    )
    jobs.append(job("old--gone", prompt_id="old", prompt="edited away", flags=["superseded"]))
    return jobs


def write_batch(root: Path, jobs: list[dict[str, Any]], *, name: str = "sweep") -> Path:
    """Write ``root/ledger.json`` for ``jobs`` and a real PNG for every image it lists."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    for n, entry in enumerate(jobs):
        size = _SIZES.get(entry["params"]["aspect_ratio"], (300, 200))
        for image in entry["images"]:
            target = root / image["path"]
            if ".." in image["path"] or image["path"].startswith("/"):
                continue
            colour = ((n * 53) % 256, (n * 97) % 256, (n * 151 + 60) % 256)
            im = Image.new("RGB", size, colour)
            im.paste((255, 255, 255), (size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2))
            im.save(target)
    ledger = {
        "name": name,
        "manifest": f"jobs/{name}.yaml",
        "started_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:01:00.000Z",
        "finished": False,
        "totals": {
            "jobs": len(jobs),
            "completed": 0,
            "failed": 0,
            "pending": 0,
            "images": 0,
            "cost_usd": 0.0,
            "credits": 0.0,
        },
        "providers": {},
        "jobs": jobs,
    }
    _fill_totals(ledger)
    (root / "ledger.json").write_text(json.dumps(ledger, indent=1), encoding="utf-8")
    return root


def _fill_totals(ledger: dict[str, Any]) -> None:
    """Totals and per-provider figures as pipeline.ledger._document computes them."""
    totals = ledger["totals"]
    totals["jobs"] = 0
    for entry in ledger["jobs"]:
        p = ledger["providers"].setdefault(
            entry["provider"],
            {
                "jobs": 0,
                "completed": 0,
                "failed": 0,
                "pending": 0,
                "images": 0,
                "cost_usd": 0.0,
                "credits": 0.0,
                "requests": 3,
                "rate_limited": 0,
            },
        )
        cost = entry["cost"] or {}
        for bucket in (totals, p):
            bucket["cost_usd"] += cost.get("usd") or 0.0
            bucket["credits"] += cost.get("credits") or 0.0
        if "superseded" in entry.get("flags", []):
            continue
        state = entry["status"] if entry["status"] in ("completed", "failed") else "pending"
        for bucket in (totals, p):
            bucket["jobs"] += 1
            bucket[state] += 1
            bucket["images"] += len(entry["images"])


class Page(HTMLParser):
    """A parsed report: every element with its attributes, and the text under each class."""

    _VOID = frozenset({"img", "meta", "br", "hr", "link", "input", "source", "wbr"})

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.texts: dict[str, list[str]] = {}
        self._stack: list[list[str]] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append((tag, values))
        if tag not in self._VOID:
            self._stack.append(values.get("class", "").split())

    def handle_endtag(self, tag: str) -> None:
        if tag not in self._VOID and self._stack:
            self._stack.pop()

    def handle_data(self, data: str) -> None:
        # Text counts for every enclosing class, so ``texts["error"]`` includes its <code>.
        for cls in dict.fromkeys(c for classes in self._stack for c in classes):
            self.texts.setdefault(cls, []).append(data)

    def attr_values(self, name: str) -> list[str]:
        """Every value of attribute ``name`` on any element."""
        return [attrs[name] for _, attrs in self.elements if name in attrs]

    def with_class(self, tag: str, cls: str) -> list[dict[str, str]]:
        """Attributes of every ``tag`` element carrying class ``cls``."""
        return [a for t, a in self.elements if t == tag and cls in a.get("class", "").split()]
