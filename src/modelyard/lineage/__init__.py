"""Lineage: the graph from dataset versions to jobs, runs, artifacts, models and endpoints."""
