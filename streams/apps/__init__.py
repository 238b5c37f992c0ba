"""Faust apps: one per service (price, signal, order, sink), each its own consumer group."""
