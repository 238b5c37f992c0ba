"""Helpers shared by the integration tests (real connections only)."""
