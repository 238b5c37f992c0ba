"""Load tests (Locust) of the API and the helpers that give them, and the API tests, real data."""
