"""The summary's comparison with the committed baseline."""

from __future__ import annotations

from typing import Any

import pytest

from bench.run_all import regressed


def figure(value: float | None, better: str | None) -> dict[str, Any]:
    return {"name": "f", "value": value, "better": better}


@pytest.mark.parametrize(
    ("value", "better", "baseline", "flagged"),
    [
        (12.1, "lower", 10.0, True),  # a latency 21% longer
        (11.9, "lower", 10.0, False),
        (5.0, "lower", 10.0, False),  # better is never flagged
        (790.0, "higher", 1000.0, True),  # a throughput 21% lower
        (810.0, "higher", 1000.0, False),
        (2000.0, "higher", 1000.0, False),
        (99.0, None, 1.0, False),  # a figure without a direction is only shown
        (None, "lower", 10.0, False),  # not measured this time
        (10.0, "lower", None, False),  # no baseline yet
    ],
)
def test_a_figure_is_flagged_only_when_over_20_percent_worse(
    value: float | None, better: str | None, baseline: float | None, flagged: bool
) -> None:
    assert regressed(figure(value, better), baseline) is flagged
