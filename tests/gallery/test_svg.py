"""The latency histogram: nice bins that count every value once."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.gallery._svg import bin_values, latency_histogram, nice_step


@pytest.mark.parametrize(
    ("raw", "step"), [(0.3, 0.5), (1.0, 1.0), (1.2, 2.0), (3.0, 5.0), (7.0, 10.0), (0.04, 0.05)]
)
def test_nice_step_is_1_2_or_5_times_a_power_of_ten(raw: float, step: float) -> None:
    """The step is the next 1/2/5 x 10^k at or above the raw width."""
    assert nice_step(raw) == pytest.approx(step)


def test_bins_of_a_known_sample() -> None:
    """Nine latencies between 1.0 and 3.4 s fall into three 1 s bins from 1.0 s."""
    bins = bin_values([1.0, 1.1, 1.6, 2.0, 2.2, 2.4, 2.6, 3.0, 3.4])
    assert bins.start == pytest.approx(1.0)
    assert bins.step == pytest.approx(1.0)
    assert bins.counts == (3, 4, 2)


@given(st.lists(st.floats(min_value=0, max_value=1e4, allow_nan=False), min_size=1, max_size=300))
def test_every_value_lands_in_exactly_one_bin(values: list[float]) -> None:
    """Counts add up to the sample, within the bin cap, and the range covers every value."""
    bins = bin_values(values)
    assert sum(bins.counts) == len(values)
    assert 1 <= len(bins.counts) <= 21
    assert bins.start <= min(values) + 1e-9
    assert bins.edge(len(bins.counts)) >= max(values) - 1e-9


def test_histogram_svg_has_a_bar_per_bin_and_no_namespace_url() -> None:
    """Inline SVG, one <rect> per bin, and no http:// namespace to break self-containment."""
    svg = latency_histogram([1.0, 1.1, 1.6, 2.0, 2.2, 2.4, 2.6, 3.0, 3.4])
    assert svg.startswith("<svg")
    assert svg.count("<rect") == 3
    assert "http" not in svg


def test_no_latencies_gives_a_note() -> None:
    """With nothing completed there is no chart, just a sentence."""
    assert "<svg" not in latency_histogram([])
