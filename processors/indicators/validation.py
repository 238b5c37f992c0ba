"""Input checks shared by the batch functions and the incremental engine.

Every message names the offending argument and says what to do about it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from processors.indicators.kernels import first_nonfinite

#: Largest accepted period (TA-Lib's upper bound as well).
MAX_PERIOD = 100_000


def check_period(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, MAX_PERIOD]``.

    >>> check_period("period", 14)
    14
    >>> check_period("period", 0)
    Traceback (most recent call last):
    ...
    ValueError: period must be an integer in [1, 100000], got 0
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer in [{minimum}, {MAX_PERIOD}], got {value!r}")
    ivalue = int(value)
    if not minimum <= ivalue <= MAX_PERIOD:
        raise ValueError(f"{name} must be an integer in [{minimum}, {MAX_PERIOD}], got {ivalue!r}")
    return ivalue


def as_float_array(name: str, values: npt.ArrayLike, check_finite: bool = True) -> npt.NDArray[np.float64]:
    """Return ``values`` as a 1-D C-contiguous float64 array with only finite values.

    No copy is made when ``values`` already is one. ``check_finite=False`` skips the NaN/inf scan for callers
    whose kernel checks while it computes.

    >>> as_float_array("close", [1, 2.5]).tolist()
    [1.0, 2.5]
    >>> as_float_array("close", [1.0, float("nan")])
    Traceback (most recent call last):
    ...
    ValueError: close[1] is nan: inputs must be finite numbers; drop or fill NaN/inf values before calling
    """
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if not check_finite:
        return arr
    bad = int(first_nonfinite(arr))
    if bad >= 0:
        raise ValueError(
            f"{name}[{bad}] is {float(arr[bad])!r}: inputs must be finite numbers; "
            "drop or fill NaN/inf values before calling"
        )
    return arr


def same_length(**arrays: npt.NDArray[np.generic]) -> int:
    """Return the common length of ``arrays`` or raise a ValueError naming the lengths.

    >>> same_length(high=np.zeros(3), low=np.zeros(2))
    Traceback (most recent call last):
    ...
    ValueError: inputs must have the same length, got high=3, low=2
    """
    lengths = {k: int(v.shape[0]) for k, v in arrays.items()}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}={n}" for k, n in lengths.items())
        raise ValueError(f"inputs must have the same length, got {detail}")
    return next(iter(lengths.values()), 0)


def check_volume(name: str, volume: npt.NDArray[np.float64]) -> None:
    """Raise if any volume is negative (volumes must already be finite).

    >>> check_volume("volume", np.array([1.0, -2.0]))
    Traceback (most recent call last):
    ...
    ValueError: volume[1] is -2.0: volumes must be >= 0
    """
    if volume.shape[0] and float(volume.min()) < 0.0:
        bad = int(np.argmax(volume < 0.0))
        raise ValueError(f"{name}[{bad}] is {float(volume[bad])!r}: volumes must be >= 0")
