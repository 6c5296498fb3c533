"""Fuzz: whatever the file holds, load_manifest gives a Batch or a ManifestError."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.errors import ManifestError
from pipeline.jobs import Batch
from pipeline.manifest import MAX_ID, load_manifest
from pipeline.manifest._issues import MAX_ISSUES
from pipeline.providers.specs import SPECS

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "100")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

YAML_TOKENS = [
    "name: ", "demo", "prompts:", "prompts_file: ", "defaults:", "sweep:", "providers:",
    "budget:", "vars:", "provider: ", "wavespeed", "skills_video", "aspect_ratio: ", "16:9",
    "resolution: ", "4k", "2K", "n: ", "0", "3", "9", "output_format: ", "jpg", "id: ",
    "prompt: ", "image_urls: ", "https://x.test/a.png", "@Image1", "@Image", "{x}", "{{",
    "}", "x: [a, b]", "- ", "\n", "\n  ", "\n    ", "[", "]", "{", ",", ": ", "&a ", "*a",
    "<<: ", "!!str ", "!!binary ", "? ", "'", '"', "#", "---", "~", "null", "true", "-1",
    ".inf", "max_usd: ", "max_concurrent: ", "base_url: ", "http://h/api", "\t", "é", "\x00",
]  # fmt: skip
CSV_TOKENS = [
    "id", "prompt", "provider", "n", "resolution", "image_urls", "aspect_ratio", ",", "\n",
    "\r\n", '"', "a cat", "wavespeed", "skills_video", "4k", "1K", "16:9", "2", "0", "|",
    "https://x.test/a.png", "{x}", "@Image2", "\xff", "\x00", " ", "colour",
]  # fmt: skip


def _text(tokens: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(tokens), max_size=40).map("".join)


def _value() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-3, 12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(
            ["wavespeed", "skills_video", "1:1", "21:9", "4k", "1k", "webp", "{v}", "@Image2", ""]
        ),
        st.text(max_size=8),
    )
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
        max_leaves=8,
    )


def _prompt() -> st.SearchStrategy[Any]:
    fields = st.fixed_dictionaries(
        {"prompt": st.sampled_from(["a cat {v}", "@Image1 {v}", "plain", "{{x}} {v}"])},
        optional={
            "id": st.sampled_from(["a", "A", "b", "p1", "x.y", "-bad"]),
            "provider": st.sampled_from(["wavespeed", "skills_video", "dalle"]),
            "resolution": st.sampled_from(["1k", "2K", "4k", "8k"]),
            "n": st.integers(0, 10),
            "vars": st.dictionaries(
                st.sampled_from(["v", "w", "n"]), st.lists(st.text(max_size=5), max_size=3)
            ),
            "image_urls": st.lists(st.just("https://x.test/i.png"), max_size=3),
            "aspect_ratio": _value(),
        },
    )
    return st.one_of(fields, st.text(max_size=10), _value())


@st.composite
def _good_prompt(draw: st.DrawFn) -> dict[str, Any]:
    """A prompt that is usually valid, so expansion and ids get exercised too."""
    names = draw(st.lists(st.sampled_from(["v", "w"]), unique=True, max_size=2))
    values = st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3, unique=True)
    prompt: dict[str, Any] = {
        "prompt": "x " + " ".join(f"{{{n}}}" for n in names),
        "vars": {n: draw(values) for n in names},
    }
    optional = {
        "id": st.sampled_from(["a", "A", "b", "p1", "x.y", "Up-9"]),
        "provider": st.sampled_from(list(SPECS)),
        "resolution": st.sampled_from(["1k", "2K"]),
        "n": st.integers(1, 4),
        "aspect_ratio": st.sampled_from(["1:1", "16:9"]),
    }
    for key in draw(st.lists(st.sampled_from(list(optional)), unique=True)):
        prompt[key] = draw(optional[key])
    return prompt


GOOD_MANIFESTS = st.fixed_dictionaries(
    {"name": st.just("fuzz"), "prompts": st.lists(_good_prompt(), min_size=1, max_size=4)},
    optional={
        "sweep": st.dictionaries(
            st.sampled_from(["provider", "resolution", "aspect_ratio", "n"]),
            st.sampled_from([["wavespeed", "skills_video"], ["1k", "2k"], ["1:1", "4:3"], [1, 2]]),
        ),
    },
)

MANIFESTS = st.fixed_dictionaries(
    {"name": st.sampled_from(["fuzz", "bad name", ""])},
    optional={
        "prompts": st.lists(_prompt(), max_size=4),
        "defaults": st.fixed_dictionaries(
            {}, optional={"n": st.integers(0, 6), "provider": st.sampled_from(list(SPECS))}
        ),
        "sweep": st.dictionaries(
            st.sampled_from(["provider", "resolution", "aspect_ratio", "n", "style"]),
            st.lists(
                st.sampled_from(["wavespeed", "skills_video", "4k", "1k", "1:1", 2]), max_size=3
            ),
        ),
        "budget": st.dictionaries(st.sampled_from(["max_usd", "max_credits"]), _value()),
        "output_dir": _value(),
    },
)


def _outcome(path: Path) -> Batch | ManifestError:
    try:
        return load_manifest(path)
    except ManifestError as exc:
        return exc


def _check(path: Path) -> None:
    batch = _outcome(path)
    if isinstance(batch, ManifestError):
        assert 1 <= len(batch.issues) <= MAX_ISSUES
        assert not any("internal error" in i.message for i in batch.issues), batch
        return
    assert isinstance(batch, Batch)
    ids = [job.id for job in batch.jobs]
    assert len({i.casefold() for i in ids}) == len(ids)
    assert all(SAFE_ID.fullmatch(i) and len(i) <= MAX_ID for i in ids)
    for job in batch.jobs:
        spec = SPECS[job.provider]
        assert job.params.resolution in spec.resolutions
        assert spec.n_min <= job.params.n <= spec.n_max
        assert 0 < len(job.prompt) <= spec.max_prompt_chars
    assert set(batch.providers) == {job.provider for job in batch.jobs}


@FUZZ
@given(text=st.one_of(_text(YAML_TOKENS), st.text(max_size=60)))
def test_random_yaml_text(tmp_path: Path, text: str) -> None:
    """Random YAML-ish text never raises anything but ManifestError."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _check(path)


@FUZZ
@given(document=st.one_of(MANIFESTS, GOOD_MANIFESTS))
def test_random_manifest_structures(tmp_path: Path, document: dict[str, Any]) -> None:
    """Manifests of plausible shape with random values: Batch (valid jobs) or ManifestError."""
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    _check(path)


@FUZZ
@given(data=st.one_of(_text(CSV_TOKENS).map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.binary(max_size=80)))  # fmt: skip
def test_random_csv_bytes(tmp_path: Path, data: bytes) -> None:
    """Random CSV bytes never raise anything but ManifestError."""
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    _check(path)
