"""Claim presets: what Better Auth's plugins add to the default JWT payload (the user object).

Each returns claims to merge into a token, e.g. `issuer.issue_token("u1", claims=banned())`.
Dates are ISO 8601 strings with milliseconds, as Better Auth serialises the user's Date fields.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

PLACEHOLDER_EMAIL_DOMAIN = "anonymous.placeholder.invalid"  # the anonymous plugin's default


def iso_timestamp(seconds: float) -> str:
    """A Date as JSON.stringify writes it: 2026-01-31T12:00:00.000Z."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def role(name: str = "admin") -> dict[str, Any]:
    """The admin plugin's fields for a user who is not banned (`role` may be "user,admin")."""
    return {"role": name, "banned": False, "banReason": None, "banExpires": None}


def banned(
    *, reason: str | None = "Spamming", expires_at: float | None = None, role_name: str = "user"
) -> dict[str, Any]:
    """The admin plugin's fields for a banned user; `expires_at` (epoch seconds) or never."""
    return {
        "role": role_name,
        "banned": True,
        "banReason": reason,
        "banExpires": None if expires_at is None else iso_timestamp(expires_at),
    }


def anonymous(placeholder_id: str = "anon") -> dict[str, Any]:
    """The anonymous plugin's user: `isAnonymous`, a placeholder email and the name "Anonymous"."""
    return {"name": "Anonymous", "email": f"{placeholder_id}@{PLACEHOLDER_EMAIL_DOMAIN}", "isAnonymous": True}


def organization(organization_id: str, *, team_id: str | None = None) -> dict[str, Any]:
    """The active organization, as a `definePayload` that spreads the user and adds the session's
    `activeOrganizationId` (and `activeTeamId` with teams) puts it."""
    return {"activeOrganizationId": organization_id, **({"activeTeamId": team_id} if team_id else {})}
