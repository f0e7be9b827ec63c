"""How p-values are reported: as a table prints them, and adjusted for the many per-disease
tests of one comparison (Benjamini-Hochberg)."""

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
