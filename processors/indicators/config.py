"""Configuration of an :class:`~processors.indicators.incremental.IndicatorSet`: periods, validated once."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from processors.indicators.validation import check_period

#: Keys of an IndicatorSet snapshot, in this order everywhere (snapshots, update_many, serialization).
SNAPSHOT_KEYS: tuple[str, ...] = (
    "ema_fast",
    "ema_slow",
    "rsi",
    "stochrsi_k",
    "stochrsi_d",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr",
    "vwap",
)


@dataclass(frozen=True, slots=True)
class IndicatorConfig:
    """Periods of the indicators computed by one IndicatorSet (one symbol and timeframe).

    Frozen and validated on construction; invalid values raise ValueError naming the field.

    >>> IndicatorConfig().macd_slow
    26
    >>> IndicatorConfig(rsi_period=7).warmup()["rsi"]
    7
    >>> IndicatorConfig(macd_fast=26, macd_slow=12)
    Traceback (most recent call last):
    ...
    ValueError: macd_fast must be smaller than macd_slow, got macd_fast=26, macd_slow=12
    """

    ema_fast: int = 12
    ema_slow: int = 26
    rsi_period: int = 14
    stoch_period: int = 14
    stoch_k: int = 3
    stoch_d: int = 3
    macd_fast: int = 12
    macd_slow: int = 26
    macd_signal: int = 9
    bb_period: int = 20
    bb_nbdev: float = 2.0
    atr_period: int = 14

    def __post_init__(self) -> None:
        minimums = {"rsi_period": 2, "macd_fast": 2, "macd_slow": 2, "bb_period": 2}
        for name in (
            "ema_fast",
            "ema_slow",
            "rsi_period",
            "stoch_period",
            "stoch_k",
            "stoch_d",
            "macd_fast",
            "macd_slow",
            "macd_signal",
            "bb_period",
            "atr_period",
        ):
            object.__setattr__(self, name, check_period(name, getattr(self, name), minimums.get(name, 1)))
        if self.macd_fast >= self.macd_slow:
            raise ValueError(
                "macd_fast must be smaller than macd_slow, "
                f"got macd_fast={self.macd_fast}, macd_slow={self.macd_slow}"
            )
        nbdev = self.bb_nbdev
        if isinstance(nbdev, bool) or not isinstance(nbdev, int | float) or not (0.0 <= nbdev < math.inf):
            raise ValueError(f"bb_nbdev must be a finite number >= 0, got {nbdev!r}")
        object.__setattr__(self, "bb_nbdev", float(nbdev))

    def warmup(self) -> dict[str, int]:
        """Number of leading NaNs of each snapshot key (the index of its first value).

        ``vwap`` is 0 here: it is defined from the first bar with volume on.

        >>> w = IndicatorConfig().warmup()
        >>> w["ema_slow"], w["stochrsi_k"], w["stochrsi_d"], w["macd"], w["macd_signal"], w["atr"]
        (25, 29, 31, 25, 33, 14)
        """
        sig = self.macd_slow + self.macd_signal - 2
        stoch_k = self.rsi_period + self.stoch_period + self.stoch_k - 2
        return {
            "ema_fast": self.ema_fast - 1,
            "ema_slow": self.ema_slow - 1,
            "rsi": self.rsi_period,
            "stochrsi_k": stoch_k,
            "stochrsi_d": stoch_k + self.stoch_d - 1,
            "macd": self.macd_slow - 1,
            "macd_signal": sig,
            "macd_hist": sig,
            "bb_upper": self.bb_period - 1,
            "bb_middle": self.bb_period - 1,
            "bb_lower": self.bb_period - 1,
            "atr": self.atr_period,
            "vwap": 0,
        }

    def as_dict(self) -> dict[str, int | float]:
        """The fields as a plain dict (for logs and JSON)."""
        return asdict(self)
