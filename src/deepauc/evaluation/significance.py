"""How p-values are reported: as a table prints them, with a bootstrap p's Monte-Carlo error,
adjusted for the many per-disease tests of one comparison (Benjamini-Hochberg), and beside the
bootstrap the seeds' own t-interval."""

from math import floor, isfinite, log10

import numpy as np

#: Below this a p-value is written as ``< 0.001`` (DeLong's normal tail is not trusted further).
SMALLEST_REPORTED_P = 0.001


def format_p(p_value: float, resamples: int | None = None) -> str:
    """A p-value as a table should show it. ``resamples``: the bootstrap's number of (finite)
    resamples B, when it produced ``p_value``.

    A bootstrap p is written as the value it is, to the resolution B gives it (three decimals
    for B up to 1000, one more per tenfold B): 2 / (B + 1), its smallest value (no resample on
    the other side of 0), is 0.002 for B = 1000, not "< 0.001", a bound nothing measured. Any
    other p below 0.001 (DeLong's) is ``< 0.001``. Otherwise two decimals from 0.1 up, two
    significant digits below (0.49, 0.035, 0.0081). NaN: ''.
    """
    if not isfinite(p_value):
        return ""
    if resamples:
        if p_value >= 0.1:
            return f"{p_value:.2f}"
        decimals = max(3, floor(log10(resamples)))
        return f"{p_value:.{decimals}f}"
    if p_value < SMALLEST_REPORTED_P:
        return f"< {SMALLEST_REPORTED_P:g}"
    if p_value >= 0.1:
        return f"{p_value:.2f}"
    return f"{p_value:.2g}"


def benjamini_hochberg(p_values) -> np.ndarray:
    """Benjamini-Hochberg q-values (false discovery rate adjusted p-values) of one family.

    q_i = min over j with p_j >= p_i of p_j * m / rank_j, capped at 1, with m the number of
    finite p-values; NaN stays NaN and is not counted. Rejecting every q <= alpha keeps the
    expected share of false discoveries at most alpha (independent or positively dependent
    tests).
    """
    p = np.asarray(p_values, dtype=float)
    q = np.full(p.shape, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    if m == 0:
        return q
    order = finite[np.argsort(p[finite], kind="stable")]
    scaled = p[order] * (m / np.arange(1, m + 1))  # m / rank >= 1 exactly: q is never below p
    q[order] = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    return q


def monte_carlo_error(p_value: float, resamples: int) -> float:
    """The Monte-Carlo standard error of a two-sided bootstrap p from ``resamples`` resamples:
    p = 2 q with q the share of resamples on the far side of 0, so sqrt(p (2 - p) / B), how far
    another resampling stream would move it (at p = 0.05: 0.0099 for B = 1000, 0.0049 for
    B = 4000, the protocol's)."""
    if not resamples or not np.isfinite(p_value):
        return float("nan")
    return float(np.sqrt(p_value * (2 - p_value) / resamples))


def seed_t_interval(per_seed: np.ndarray) -> dict[str, float]:
    """The seed-level 95% t-interval of the mean difference and its two-sided one-sample t-test
    p, from the per-seed differences (``n_seeds``; NaN for fewer than two seeds). Beside the
    two-level bootstrap, whose seed level has few distinct draws at few seeds (10 for three), it
    answers the question with the seeds as the only sample: are the seeds' differences centred
    away from zero?"""
    from scipy import stats as scipy_stats

    values = per_seed[np.isfinite(per_seed)]
    n = len(values)
    row = {"n_seeds": n, "seed_delta_low": np.nan, "seed_delta_high": np.nan, "seed_p": np.nan}
    if n < 2:
        return row
    mean, error = float(values.mean()), float(values.std(ddof=1) / np.sqrt(n))
    if error == 0:
        return {
            **row,
            "seed_delta_low": mean,
            "seed_delta_high": mean,
            "seed_p": 1.0 if mean == 0 else 0.0,
        }
    quantile = float(scipy_stats.t.ppf(0.975, n - 1))
    t_stat = mean / error
    return {
        **row,
        "seed_delta_low": mean - quantile * error,
        "seed_delta_high": mean + quantile * error,
        "seed_p": float(2 * scipy_stats.t.sf(abs(t_stat), n - 1)),
    }
