"""Numbers in messages that stay true when printed.

A caution such as ``backbone drift 0.005 < 0.005`` is what two significant digits make of
0.00496 against a limit of 0.005: each number rounded alone, the comparison read off the page
is false. :func:`compared` writes the value with as many digits as it takes for the printed
numbers to compare as the real ones do.
"""

import operator

_OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
#: Significant digits tried at most; beyond them the value is written in full.
MOST_DIGITS = 12


def compared(value: float, op: str, limit: float, digits: int = 2) -> str:
    """``"<value> <op> <limit>"`` with ``value`` written with at least ``digits`` significant
    digits, and more where fewer would make the printed comparison false (or true where the
    real one is false); ``limit`` as ``:g`` writes it.

    >>> compared(0.00496, "<", 0.005)
    '0.00496 < 0.005'
    >>> compared(0.0123, "<", 0.05)
    '0.012 < 0.05'
    """
    holds = _OPERATORS[op]
    shown_limit = f"{limit:g}"
    truth = holds(value, limit)
    for n in range(digits, MOST_DIGITS + 1):
        shown = f"{value:.{n}g}"
        if holds(float(shown), float(shown_limit)) == truth:
            return f"{shown} {op} {shown_limit}"
    return f"{value!r} {op} {limit!r}"
