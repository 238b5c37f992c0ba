"""A seeded, realistic tick simulator (pure numpy, no I/O).

Prices follow geometric Brownian motion per symbol (annualized drift and volatility), observed through
microstructure noise (bid/ask bounce of half a tick size) and rounded to the tick size. Arrivals are a Poisson
process whose intensity switches into bursts (a two-state Markov chain: calm, burst at ``burst_factor`` times
the rate), as real feeds cluster around news. Sizes are log-normal.

>>> ticks = simulate(symbols=3, rate=1000, seconds=2, seed=7)
>>> len(ticks.ts_us) == len(ticks.price) == len(ticks.symbol_index)
True
>>> bool((ticks.price > 0).all()) and bool((np.diff(ticks.ts_us) >= 0).all())
True
>>> simulate(symbols=3, rate=1000, seconds=2, seed=7).price.tobytes() == ticks.price.tobytes()
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_YEAR = 365.0 * 24 * 3600


@dataclass(frozen=True)
class SimulatedTicks:
    symbols: list[str]
    symbol_index: np.ndarray
    ts_us: np.ndarray
    price: np.ndarray
    size: np.ndarray


@dataclass(frozen=True)
class MarketModel:
    drift: float = 0.05
    volatility: float = 0.6
    tick_size_bp: float = 0.5
    burst_factor: float = 8.0
    burst_prob: float = 0.02
    burst_len_s: float = 0.5
    start_us: int = 1_700_000_000_000_000


def simulate(
    symbols: int, rate: float, seconds: float, seed: int, model: MarketModel | None = None
) -> SimulatedTicks:
    """``rate`` ticks per second in total over ``symbols`` symbols for ``seconds`` seconds of event time."""
    if symbols < 1 or rate <= 0 or seconds <= 0:
        raise ValueError("simulate needs symbols >= 1, rate > 0 and seconds > 0")
    m = model or MarketModel()
    rng = np.random.default_rng(seed)
    # Arrival intensity per 10 ms slot: calm or burst (Markov chain), then Poisson counts per slot.
    slot_s = 0.01
    slots = max(1, round(seconds / slot_s))
    stay = 1.0 - slot_s / m.burst_len_s
    state = np.empty(slots, dtype=bool)
    u = rng.random(slots)
    burst = False
    for i in range(slots):
        burst = (u[i] < stay) if burst else (u[i] < m.burst_prob * slot_s / 0.1)
        state[i] = burst
    weight = np.where(state, m.burst_factor, 1.0)
    intensity = rate * slot_s * weight * (slots / weight.sum())
    counts = rng.poisson(intensity)
    n = int(counts.sum())
    slot_of = np.repeat(np.arange(slots), counts)
    slot_us = int(slot_s * 1e6)
    within = rng.integers(0, slot_us, n)
    ts = np.sort(m.start_us + slot_of.astype(np.int64) * slot_us + within, kind="stable")
    sym = rng.integers(0, symbols, n)
    # GBM per symbol in event time, sampled at each of its ticks.
    price = np.empty(n)
    start_prices = np.exp(rng.uniform(np.log(5.0), np.log(50_000.0), symbols))
    sigma = m.volatility / np.sqrt(SECONDS_PER_YEAR)
    mu = (m.drift - 0.5 * m.volatility**2) / SECONDS_PER_YEAR
    for s in range(symbols):
        idx = np.flatnonzero(sym == s)
        if idx.size == 0:
            continue
        dt = np.diff(ts[idx], prepend=ts[idx[0]]) / 1e6
        log_path = np.log(start_prices[s]) + np.cumsum(
            mu * dt + sigma * np.sqrt(dt) * rng.standard_normal(idx.size)
        )
        tick = start_prices[s] * m.tick_size_bp * 1e-4
        bounce = (rng.integers(0, 2, idx.size) - 0.5) * tick
        price[idx] = np.maximum(np.round((np.exp(log_path) + bounce) / tick) * tick, tick)
    size = np.round(rng.lognormal(mean=0.0, sigma=1.0, size=n), 6)
    names = [f"SIM{i:04d}" for i in range(symbols)]
    return SimulatedTicks(names, sym.astype(np.int32), ts, price, size)
