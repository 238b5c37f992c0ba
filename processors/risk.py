"""Pre-trade risk checks (pure code): the limits, their order and their wording, in one place.

Both sources of orders go through :func:`pre_trade`: the order stage for signal orders
(:class:`processors.orders.OrderBook`, in event time) and the API for manual orders
(:mod:`streams.api.orders`, in wall-clock time). The first failing check is the rejection reason:

1. kill switch engaged (``RiskLimits.kill_switch``; the stage and the API read the run-time switch in Redis
   as well as ``STOCKPULSE_ORDER__KILL_SWITCH``);
2. no reference price for the symbol;
3. rate limit: ``max_orders_per_minute`` accepted orders of the same scope within the last minute;
4. position limit: ``|position after| > max_position``;
5. notional limit: ``|position after| * price > max_notional``.

>>> limits = RiskLimits(max_position=1.0, max_orders_per_minute=2)
>>> pre_trade(limits, "A", position_after=2.0, price=10.0, accepted_last_minute=0)
'position limit: |2| > 1'
>>> pre_trade(limits, "A 1m", position_after=1.0, price=10.0, accepted_last_minute=2)
'rate limit: 2 orders per minute for A 1m reached'
>>> pre_trade(limits, "A", position_after=1.0, price=10.0, accepted_last_minute=0)
''
>>> pre_trade(engaged(limits, "desk halt"), "A", position_after=1.0, price=None, accepted_last_minute=0)[:33]
'kill switch engaged (desk halt): '
"""

from __future__ import annotations

from dataclasses import dataclass, replace

MINUTE_US = 60_000_000


@dataclass(frozen=True, slots=True)
class RiskLimits:
    order_quantity: float = 1.0  # a signal order's target position size (manual orders give their own)
    max_position: float = 1.0
    max_notional: float = 1e7
    max_orders_per_minute: int = 10
    max_staleness_us: int = 300_000_000  # signal orders: how old the next tick after the bar may be
    kill_switch: bool = False
    kill_reason: str = ""  # why it was engaged (shown in every rejection)


def kill_switch_reason(why: str = "") -> str:
    """The rejection reason while the kill switch is engaged.

    >>> kill_switch_reason("desk halt")
    'kill switch engaged (desk halt): no new orders; resume with `stockpulse kill-switch off` ...'
    """
    what = f" ({why})" if why else ""
    return (
        f"kill switch engaged{what}: no new orders; resume with `stockpulse kill-switch off` "
        "(and unset STOCKPULSE_ORDER__KILL_SWITCH)"
    )


def engaged(base: RiskLimits, switch_reason: str | None, setting_name: str = "") -> RiskLimits:
    """``base`` with the run-time kill switch applied: ``switch_reason`` is the reason stored with the switch
    (None: not engaged at run time); a switch engaged by configuration stays engaged, named ``setting_name``.

    >>> engaged(RiskLimits(), None).kill_switch, engaged(RiskLimits(), "halt").kill_reason
    (False, 'halt')
    >>> engaged(RiskLimits(kill_switch=True), None, "STOCKPULSE_ORDER__KILL_SWITCH").kill_reason
    'STOCKPULSE_ORDER__KILL_SWITCH'
    """
    on = base.kill_switch or switch_reason is not None
    why = switch_reason or (setting_name if base.kill_switch else "")
    return replace(base, kill_switch=on, kill_reason=why if on else "")


def pre_trade(
    limits: RiskLimits, scope: str, position_after: float, price: float | None, accepted_last_minute: int
) -> str:
    """Why an order that takes ``scope``'s position to ``position_after`` at ``price`` must be rejected, or
    ``""``. ``scope`` names what the rate limit counts (a symbol, or a symbol and its signal timeframe)."""
    if limits.kill_switch:
        return kill_switch_reason(limits.kill_reason)
    if price is None:
        return (
            f"no reference price for {scope}: no bar of it is stored yet; orders are accepted once the price "
            "stage has published a bar of the symbol"
        )
    if accepted_last_minute >= limits.max_orders_per_minute:
        return f"rate limit: {limits.max_orders_per_minute} orders per minute for {scope} reached"
    if abs(position_after) > limits.max_position:
        return f"position limit: |{position_after:g}| > {limits.max_position:g}"
    if abs(position_after) * price > limits.max_notional:
        return f"notional limit: {abs(position_after) * price:,.2f} > {limits.max_notional:,.2f}"
    return ""
