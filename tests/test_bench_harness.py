"""The benchmark's percentile, which every latency figure in README rests on."""

import math

import numpy as np
import pytest

from bench.harness import percentile


@pytest.mark.parametrize("q", [0, 50, 95, 99, 100])
def test_percentile_matches_numpy_linear_interpolation(q):
    values = [float(v) for v in np.random.default_rng(6).exponential(40, size=997)]
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_interpolates_between_ranks_and_ignores_order():
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([10.0, 20.0], 95) == pytest.approx(19.5)
    assert percentile([7.0], 99) == 7.0


def test_percentile_of_nothing_is_nan_not_zero():
    assert math.isnan(percentile([], 95))
