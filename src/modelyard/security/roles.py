"""Roles and the permissions they grant.

A permission is ``<domain>.<action>`` with action ``read``, ``write``, ``approve`` or
``admin``. Roles grant wildcard patterns; :meth:`Principal.can` matches them.
"""

from __future__ import annotations

from typing import Literal

Role = Literal["admin", "engineer", "scientist", "viewer"]
ROLES: dict[str, frozenset[str]] = {
    # Everything, including users, tokens of others and the audit log.
    "admin": frozenset({"*"}),
    # Builds and ships: may approve model versions and change endpoints.
    "engineer": frozenset({"*.read", "*.write", "*.approve"}),
    # Experiments and data: may not approve what goes to production.
    "scientist": frozenset({"*.read", "*.write"}),
    # Looks only; may still manage their own tokens.
    "viewer": frozenset({"*.read", "tokens.write"}),
}
