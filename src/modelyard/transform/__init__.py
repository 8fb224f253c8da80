"""Batch transform: a registered model version over a dataset version (or files), run as a
job of kind ``transform``; the predictions become a new dataset version (docs/batch-transform.md).
"""
