"""infra/local package."""
