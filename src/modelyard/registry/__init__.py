"""The model registry: model groups, numbered versions, approval, aliases and history."""
