"""Arguments checked once, at the public door.

Every public numeric argument accepts Python and numpy numbers alike (``3``, ``np.int64(3)``,
``np.float32(0.1)``) and leaves here as a plain ``int`` / ``float`` / ``bool`` / ``str``, so that
nothing deeper (torch, JSON, the saved config) ever sees a numpy scalar. A bad value raises a
``TypeError`` (wrong kind) or ``ValueError`` (wrong value) that names the argument, says what was
given and what is expected.

Only numpy: no torch, no AnnData.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_float",
    "check_int",
    "check_optional_int",
    "check_seed",
    "check_seeds",
    "check_time",
    "check_times",
]


def is_int(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def is_real(value: Any) -> bool:
    """A Python or numpy real number (integers included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as a plain ``int >= minimum`` (Python or numpy integer; not bool, not float)."""
    if not is_int(value):
        raise TypeError(
            f"{name} must be an integer >= {minimum}, got {value!r} ({type(value).__name__})."
        )
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {int(value)}.")
    return int(value)


def check_optional_int(name: str, value: Any, *, minimum: int = 1) -> int | None:
    """:func:`check_int`, with ``None`` passed through."""
    return None if value is None else check_int(name, value, minimum=minimum)


def check_float(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    strict: bool = False,
    maximum: float | None = None,
) -> float:
    """``value`` as a finite plain ``float`` (any Python or numpy real; not bool).

    ``minimum`` is inclusive unless ``strict``; ``maximum`` is inclusive.
    """
    bound = ""
    if minimum is not None:
        bound = f" {'>' if strict else '>='} {minimum:g}"
    if maximum is not None:
        bound += f"{' and' if bound else ''} <= {maximum:g}"
    if not is_real(value):
        raise TypeError(
            f"{name} must be a finite number{bound}, got {value!r} ({type(value).__name__})."
        )
    value = float(value)
    if (
        not np.isfinite(value)
        or (minimum is not None and (value <= minimum if strict else value < minimum))
        or (maximum is not None and value > maximum)
    ):
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}.")
    return value


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a plain ``bool`` (Python or numpy bool only: ``1`` or ``"yes"`` are refused)."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices`` (strings), else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}.")
    return value


def check_seed(value: Any, name: str = "seed") -> int:
    """A seed: a non-negative Python or numpy integer (numpy's generators refuse negatives)."""
    return check_int(name, value, minimum=0)


def check_seeds(value: Any, name: str = "seeds") -> list[int]:
    """A non-empty sequence of seeds (a list, tuple, range or numpy array) as plain ints."""
    if is_int(value) or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a sequence of non-negative integers (e.g. (0, 1, 2) or "
            f"np.arange(3)), got {value!r}."
        )
    seeds = [check_seed(s, f"each entry of {name}") for s in np.asarray(list(value)).tolist()]
    if not seeds:
        raise ValueError(f"{name} is empty; pass at least one seed, e.g. {name}=(0,).")
    return seeds


def check_time(name: str, value: Any) -> float:
    """One time point: a finite Python or numpy real, as a float."""
    if not is_real(value):
        raise TypeError(
            f"{name} must be a number (a time point in the units of obs[time_key]), got "
            f"{value!r} ({type(value).__name__})."
        )
    return check_float(name, value)


def check_times(name: str, value: Any, *, allow_none: bool = True) -> list[float]:
    """``None`` (no times, if allowed), one time or a sequence of times, as a sorted list of
    unique floats."""
    if value is None:
        if allow_none:
            return []
        raise TypeError(f"{name} must be a number or a sequence of numbers, got None.")
    if is_real(value):
        return [check_time(name, value)]
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a number or a sequence of numbers (time points in the units of "
            f"obs[time_key]), got {value!r} ({type(value).__name__})."
        )
    items = list(np.asarray(list(value), dtype=object).ravel())
    return sorted({check_time(f"each entry of {name}", t) for t in items})
