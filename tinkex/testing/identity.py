"""Who an API key acts as on the local server: a stable principal derived from the key, never the key itself.

The hosted service maps a key to its user and organization; locally every distinct key is its own user in one
local organization, so that two keys see each other's sessions only through ``accessible`` searches, as two
users of one organization would. Everything here is derived from a SHA-256 fingerprint: a reply may carry the
fingerprint's prefix, never any part of the key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["LOCAL_ORGANIZATION", "Principal", "principal_for"]

LOCAL_ORGANIZATION = "local"


@dataclass(frozen=True)
class Principal:
    key_id: int
    """A number naming the key (as ``auth/apikey/me`` reports it)."""
    user_urn: str
    org_urn: str
    email: str
    key_name: str

    def whoami_body(self) -> dict[str, object]:
        """The ``auth/apikey/me`` reply: the official CLI's ``SelfApiKeyResponse`` fields (key id, name, note,
        details) and the SDK's ``WhoamiResponse`` fields (user and organization URNs, email) in one object, so
        either reader finds what it needs and ignores the rest."""
        return {
            "key_id": self.key_id,
            "name": self.key_name,
            "note": "issued by the local Tinker-compatible server",
            "details": {"org_details": {"name": LOCAL_ORGANIZATION}, "user_details": {"email": self.email}},
            "user_urn": self.user_urn,
            "org_urn": self.org_urn,
            "email": self.email,
        }


def principal_for(api_key: str) -> Principal:
    """The principal ``api_key`` acts as; the same key always gives the same principal."""
    fingerprint = hashlib.sha256(api_key.encode()).hexdigest()
    short = fingerprint[:12]
    return Principal(
        key_id=int(fingerprint[:8], 16),
        user_urn=f"tml:user:local-{short}",
        org_urn=f"tml:organization:{LOCAL_ORGANIZATION}",
        email=f"user-{short}@{LOCAL_ORGANIZATION}.invalid",
        key_name=f"key-{short[:8]}",
    )
