"""Faust apps, topics, agents, the feed handler and the CLI wiring."""
