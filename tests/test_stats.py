"""Confidence intervals on known inputs: t quantiles, a mean's half-width, paired differences."""

from __future__ import annotations

import pytest

from pipeline.report.stats import (
    Interval,
    mean_interval,
    normalised_area,
    paired_difference,
    steps_to_reach,
    t_cdf_two_sided,
    t_quantile,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    # Two-sided 95% critical values from any t table.
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622), (10, 2.2281), (30, 2.0423), (1000, 1.9623)],
)
def test_t_quantile_matches_the_table(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)


def test_t_cdf_inverts_the_quantile_and_knows_the_cauchy_case():
    assert t_cdf_two_sided(1.0, 1) == pytest.approx(0.5)  # Cauchy: P(|T| <= 1) = 1/2
    for df in (1, 2, 5, 12):
        assert t_cdf_two_sided(t_quantile(0.9, df), df) == pytest.approx(0.8)


def test_half_width_of_a_known_sample():
    # mean 0.8, s = 0.1, s/√3 = 0.057735, t(0.975, 2) = 4.302653 -> half-width 0.248414
    interval = mean_interval([0.7, 0.8, 0.9])
    assert interval.mean == pytest.approx(0.8)
    assert interval.half_width == pytest.approx(0.248414, abs=1e-6)
    assert (interval.low, interval.high) == pytest.approx((0.551586, 1.048414), abs=1e-6)
    assert interval.n == 3


def test_one_value_has_no_interval():
    interval = mean_interval([0.75])
    assert interval == Interval(0.75, None, 1)
    assert interval.low is None and interval.significant is None


def test_paired_difference_uses_common_seeds_only():
    method = {0: 0.80, 1: 0.85, 2: 0.90, 7: 0.10}
    baseline = {0: 0.70, 1: 0.80, 2: 0.80, 3: 0.99}
    # differences 0.10, 0.05, 0.10: mean 0.083333, s = 0.028868, s/√3 = 0.016667, × 4.302653 = 0.071711
    interval = paired_difference(method, baseline)
    assert interval.n == 3
    assert interval.mean == pytest.approx(0.083333, abs=1e-6)
    assert interval.half_width == pytest.approx(0.071711, abs=1e-6)
    assert interval.significant is True  # [0.0116, 0.1550] excludes 0


def test_difference_whose_interval_contains_zero_is_not_significant():
    interval = paired_difference({0: 0.8, 1: 0.7, 2: 0.9}, {0: 0.75, 1: 0.75, 2: 0.75})
    assert interval.low < 0 < interval.high
    assert interval.significant is False


def test_pairing_removes_what_both_runs_of_a_seed_share():
    # Seeds differ a lot, but the method beats the baseline by exactly 0.02 on every seed.
    baseline = {0: 0.60, 1: 0.75, 2: 0.90}
    method = {seed: value + 0.02 for seed, value in baseline.items()}
    assert mean_interval(list(method.values())).half_width > 0.3
    paired = paired_difference(method, baseline)
    assert paired.mean == pytest.approx(0.02) and paired.half_width == pytest.approx(0.0, abs=1e-12)


def test_no_common_seed_is_an_error():
    with pytest.raises(ValueError, match="no seed in common"):
        paired_difference({0: 0.5}, {1: 0.5})


CURVE = [(0, 0.50), (10, 0.70), (20, 0.82), (30, 0.78), (40, 0.86)]


def test_steps_to_reach_returns_the_first_crossing():
    # 0.95 · 0.86 = 0.817: step 20 (0.82) is the first at or above it; the dip at step 30 does not matter.
    assert steps_to_reach(CURVE, 0.86) == 20
    assert steps_to_reach(CURVE, 0.80, fraction=1.0) == 20
    assert steps_to_reach(CURVE, 0.40) == 0  # already there at the initial prompt


def test_steps_to_reach_counts_an_exact_tie_and_says_none_when_never_reached():
    assert steps_to_reach([(0, 0.5), (10, 0.75), (20, 0.8)], 0.75, fraction=1.0) == 10
    assert steps_to_reach(CURVE, 0.95) is None  # 0.95 · 0.95 = 0.9025 > 0.86


def test_normalised_area_is_the_trapezoid_mean_over_the_span():
    # Trapezoids: 10·0.60 + 10·0.76 + 10·0.80 + 10·0.82 = 29.8 over a span of 40 -> 0.745
    assert normalised_area(CURVE) == pytest.approx(0.745)
    # Uneven spacing: 10·0.55 + 30·0.65 = 25 over 40 -> 0.625
    assert normalised_area([(0, 0.5), (10, 0.6), (40, 0.7)]) == pytest.approx(0.625)
    assert normalised_area([(0, 0.8), (60, 0.8)]) == pytest.approx(0.8)  # a flat curve of any length
    assert normalised_area([(5, 0.66)]) == pytest.approx(0.66)


@pytest.mark.parametrize("curve", [[], [(0, 0.5), (0, 0.6)], [(10, 0.5), (5, 0.6)]])
def test_curves_must_be_non_empty_with_increasing_steps(curve):
    with pytest.raises(ValueError, match="dev curve"):
        normalised_area(curve)
    with pytest.raises(ValueError, match="dev curve"):
        steps_to_reach(curve, 0.8)


def test_fraction_must_be_a_share():
    with pytest.raises(ValueError, match="fraction"):
        steps_to_reach(CURVE, 0.8, fraction=0)
