"""Small-sample statistics for the report: Student-t confidence intervals of a mean and of paired differences.

Torch- and scipy-free. The t distribution is evaluated with the closed forms for an integer number of degrees of
freedom (Abramowitz & Stegun 26.7.3-4), which is all a mean over n seeds needs (ν = n - 1), and inverted by
bisection, so a quantile is exact to float precision without a statistics library.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

LEVEL = 0.95  # the confidence level of every interval in the report


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` (a positive integer) degrees of freedom, t >= 0."""
    if df < 1 or int(df) != df:
        raise ValueError(f"degrees of freedom must be a positive integer, got {df}")
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2:  # odd: (2/π)(θ + sinθ cosθ (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + ...)), (df - 1) / 2 terms
        term, series = 1.0, 1.0 if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= 2 * j / (2 * j + 1) * cos2
            series += term
        return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * series)
    # even: sinθ (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + ...), df / 2 terms
    term = series = 1.0
    for j in range(1, df // 2):
        term *= (2 * j - 1) / (2 * j) * cos2
        series += term
    return math.sin(theta) * series


def t_quantile(probability: float, df: int) -> float:
    """The ``probability`` quantile (> 0.5) of Student's t with integer ``df``: t(0.975, 2) = 4.3027."""
    if not 0.5 < probability < 1:
        raise ValueError(f"probability must be in (0.5, 1), got {probability}")
    covered = 2 * probability - 1  # the two-sided mass inside ±t
    low, high = 0.0, 1.0
    while t_cdf_two_sided(high, df) < covered:
        high *= 2
    for _ in range(200):  # bisection: each step halves the bracket, so 200 steps reach float resolution
        middle = (low + high) / 2
        if middle in (low, high):
            break
        if t_cdf_two_sided(middle, df) < covered:
            low = middle
        else:
            high = middle
    return high


@dataclass(frozen=True)
class Interval:
    """A mean over ``n`` values and the half-width of its confidence interval (None when n = 1)."""

    mean: float
    half_width: float | None
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    @property
    def significant(self) -> bool | None:
        """Whether the interval excludes 0 (for a difference: a real gain or loss); None without an interval."""
        if self.half_width is None:
            return None
        return self.low > 0 or self.high < 0


def mean_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean and t-interval half-width t(1 - α/2, n - 1) · s / √n of ``values``; no interval for one value."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = math.fsum(values) / n
    if n == 1:
        return Interval(mean, None, 1)
    variance = math.fsum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile(1 - (1 - level) / 2, n - 1) * math.sqrt(variance / n)
    return Interval(mean, half, n)


def paired_difference(values: Mapping[int, float], baseline: Mapping[int, float], level: float = LEVEL) -> Interval:
    """Interval of the mean of ``values[s] - baseline[s]`` over the seeds ``s`` both have.

    Pairing by seed removes what both runs of a seed share (the few-shot draw, the batch order), so the interval
    is usually much narrower than the two separate intervals suggest.
    """
    seeds = sorted(set(values) & set(baseline))
    if not seeds:
        raise ValueError("no seed in common")
    return mean_interval([values[s] - baseline[s] for s in seeds], level)


def steps_to_reach(curve: Sequence[tuple[int, float]], reference: float, fraction: float = 0.95) -> int | None:
    """The first evaluated step whose accuracy is >= ``fraction`` · ``reference``; None if the curve never gets
    there."""
    target = fraction * reference
    return next((int(step) for step, accuracy in sorted(curve) if accuracy >= target), None)


def normalised_area(curve: Sequence[tuple[int, float]]) -> float:
    """The trapezoid area under ``curve`` (step, accuracy) divided by its step span: the mean accuracy over the run,
    which rewards reaching a level early. One point: its accuracy."""
    points = sorted(curve)
    if not points:
        raise ValueError("no points")
    if len(points) == 1 or points[-1][0] == points[0][0]:
        return float(points[-1][1])
    area = math.fsum((s1 - s0) * (a0 + a1) / 2 for (s0, a0), (s1, a1) in zip(points, points[1:]))
    return area / (points[-1][0] - points[0][0])
