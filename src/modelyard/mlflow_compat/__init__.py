"""MLflow tracking REST API compatibility: MLflow clients logging to modelyard, unchanged.

A translation layer only (see ``docs/mlflow-compat.md``): each MLflow request becomes one
or more calls of modelyard's own operations through :meth:`Runtime.execute`, so the
caller's token, role, the audit trail and the transactions apply exactly as for the
native API. Nothing here touches a table.
"""

from modelyard.mlflow_compat.router import mlflow_router

__all__ = ["mlflow_router"]
