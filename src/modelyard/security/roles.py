"""Roles and the permissions they grant.

A permission is ``<domain>.<action>`` with action ``read``, ``write``, ``approve``,
``deploy`` or ``admin``. Roles grant wildcard patterns; :meth:`Principal.can` matches them.
``deploy`` is what changes served traffic: creating, updating and deleting endpoints
(``endpoints.deploy``) and moving the ``production`` alias (``models.deploy``).
"""

from __future__ import annotations

from typing import Literal

Role = Literal["admin", "engineer", "scientist", "viewer"]
ROLES: dict[str, frozenset[str]] = {
    # Everything, including users, tokens of others and the audit log.
    "admin": frozenset({"*"}),
    # Builds and ships: may approve model versions and deploy them (endpoints, production).
    "engineer": frozenset({"*.read", "*.write", "*.approve", "*.deploy"}),
    # Experiments and data: may not approve or deploy what goes to production.
    "scientist": frozenset({"*.read", "*.write"}),
    # Looks only; may still manage their own tokens.
    "viewer": frozenset({"*.read", "tokens.write"}),
}
