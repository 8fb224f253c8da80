"""Plumbing every domain stands on: database, artifact store, operations, events, ids."""
