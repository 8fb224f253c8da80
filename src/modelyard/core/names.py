"""The name and id patterns that several domains' schemas share.

Plain strings and nothing else: a domain's schemas take another domain's names from here
rather than importing that domain's schemas, whose models (and the models those import)
a command would otherwise load without using them. Each domain's ``schemas`` module still
exports its own (``modelyard.data.schemas.DATASET_NAME`` is this ``DATASET_NAME``).
"""

from __future__ import annotations

# Lowercase hex SHA-256 of an artifact's content.
DIGEST_PATTERN = r"^[0-9a-f]{64}$"
DATASET_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
EXPERIMENT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$"
# A model version: its number, or an alias (aliases start with a letter, never both).
VERSION_REF = r"^([1-9][0-9]{0,8}|[a-z][a-z0-9_-]{0,62})$"
JOB_ID = r"^job-[0-9a-z]{26}$"
JOB_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"
# A compute backend: its name, or a URL (``local``, ``ray://host:10001``).
BACKEND_URL = r"^[a-z][a-z0-9+.-]{0,30}(://[!-~]{0,500})?$"
