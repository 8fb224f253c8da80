"""Endpoints: production variants, the router, rollouts and data capture."""
