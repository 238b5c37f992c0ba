"""Tick sources: replays of the real recordings and a seeded market simulator, both producing to ticks.raw."""
