"""The risk stage's limits from the settings: one mapping, used by the order stage (signal orders) and the API
(manual orders); the checks themselves are :mod:`processors.risk`."""

from __future__ import annotations

from processors.risk import RiskLimits
from streams.config import Settings

#: names the configured kill switch in rejection reasons
KILL_SWITCH_SETTING = "STOCKPULSE_ORDER__KILL_SWITCH"


def risk_limits(settings: Settings) -> RiskLimits:
    """The limits of ``STOCKPULSE_ORDER__*``.

    >>> risk_limits(Settings(order={"max_position": 3.0})).max_position
    3.0
    """
    o = settings.order
    return RiskLimits(
        order_quantity=o.order_quantity,
        max_position=o.max_position,
        max_notional=o.max_notional,
        max_orders_per_minute=o.max_orders_per_minute,
        max_staleness_us=int(o.max_staleness_s * 1e6),
        kill_switch=o.kill_switch,
    )
