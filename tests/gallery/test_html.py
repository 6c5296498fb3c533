"""The report page: complete, escaped and self-contained."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

from pipeline.gallery import write_report

from ._support import EVIL_PROMPT, SWEEP_PROVIDERS, SWEEP_RATIOS, SWEEP_STYLES, Page


def ledger_jobs(root: Path) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = json.loads((root / "ledger.json").read_text())["jobs"]
    return jobs


def test_every_image_appears_as_a_thumbnail_linking_to_the_full_image(sweep_dir: Path) -> None:
    """Each current job's images: an <a href=images/...> around an <img src=thumbs/...>."""
    page = Page(write_report(sweep_dir).read_text(encoding="utf-8"))
    links = {a["href"] for a in page.with_class("a", "img")}
    sources = set(page.attr_values("src"))
    shown = 0
    for job in ledger_jobs(sweep_dir):
        for image in job["images"]:
            if "superseded" in job.get("flags", []):
                assert image["path"] not in links
                continue
            assert image["path"] in links
            thumb = "thumbs/" + image["path"].removeprefix("images/") + ".jpg"
            assert thumb in sources
            assert (sweep_dir / thumb).is_file()
            shown += 1
    assert shown == len(links) == 14  # 16 jobs, 1 failed, 2 pending, 1 with two images


def test_headers_show_every_axis_value(sweep_dir: Path) -> None:
    """Column headers carry each ratio/provider/style; row headers carry the prompt ids."""
    page = Page(write_report(sweep_dir).read_text(encoding="utf-8"))
    values = set(page.texts["val"])
    assert {*SWEEP_RATIOS, *SWEEP_PROVIDERS, *SWEEP_STYLES, "lighthouse", "evil"} <= values
    axes = set(page.texts["axis"])
    assert {"aspect_ratio", "provider", "style", "prompt"} <= axes


def test_failed_cells_show_code_and_message_and_pending_cells_say_pending(
    sweep_dir: Path,
) -> None:
    """The failed job shows its code, message and HTTP status; both unfinished jobs say pending."""
    text = write_report(sweep_dir).read_text(encoding="utf-8")
    page = Page(text)
    errors = " ".join(page.texts["error"] + page.texts["msg"])
    assert "task_failed" in errors
    assert "Image generation <failed> & gone" in errors
    assert "IMAGE_GENERATION_FAILED" in errors
    assert "HTTP 200" in errors
    assert len(page.with_class("div", "failed")) >= 1
    assert len([d for d in page.with_class("div", "job") if "pending" in d["class"]]) == 2
    assert page.texts["badge"].count("pending") >= 2
    assert page.texts["badge"].count("failed") == 1
    assert page.texts["badge"].count("completed") == 13


def test_summary_shows_totals_cost_per_provider_and_a_histogram(sweep_dir: Path) -> None:
    """Totals cards, a row per provider and an inline SVG histogram with one bar per bin."""
    text = write_report(sweep_dir).read_text(encoding="utf-8")
    page = Page(text)
    nums = dict(zip(page.texts["lbl"], page.texts["num"], strict=True))
    assert nums["jobs"] == "16"
    assert nums["completed"] == "13"
    assert nums["failed"] == "1"
    assert nums["pending"] == "2"
    assert nums["images"] == "14"
    assert nums["cost USD"] == "$0.420"  # 15 images x $0.028: the superseded one cost too
    assert nums["credits"] == "120"  # 6 completed skills_video jobs x 20
    providers = page.with_class("table", "providers")
    assert len(providers) == 1
    assert "skills_video" in text
    assert text.count("<svg") == 1
    assert len([t for t, _ in page.elements if t == "rect"]) >= 2
    assert "superseded job not shown" in text


def test_page_is_self_contained(sweep_dir: Path) -> None:
    """No script, no stylesheet link, no absolute URL: only relative files inside the batch."""
    root = sweep_dir
    text = write_report(root).read_text(encoding="utf-8")
    page = Page(text)
    tags = {t for t, _ in page.elements}
    assert not tags & {"script", "link", "iframe", "object", "embed", "base"}
    for name in ("href", "src", "srcset", "xlink:href", "action", "data"):
        for value in page.attr_values(name):
            assert not re.match(r"^[a-z][a-z0-9+.-]*:|^/", value, re.I), value
            assert (root / value).is_file(), value
    assert "url(" not in text
    assert "@import" not in text
    # The only web addresses are the ones users wrote, escaped, in prompts and messages.
    stripped = text
    for job in ledger_jobs(root):
        stripped = stripped.replace(escape(job["prompt"]), "")
    assert "http://" not in stripped
    assert "https://" not in stripped
    assert "https://evil.example" in text


def test_script_in_a_prompt_is_escaped(sweep_dir: Path) -> None:
    """A prompt holding <script> shows as text, never as markup."""
    text = write_report(sweep_dir).read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    page = Page(text)
    assert EVIL_PROMPT in "".join(page.texts["prompt"])
    assert EVIL_PROMPT in page.attr_values("alt")
