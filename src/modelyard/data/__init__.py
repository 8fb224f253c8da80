"""Versioned datasets: registration, schemas, profiles, data-quality checks and diffs."""
