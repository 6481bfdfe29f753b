"""Per-project API keys: created and revoked by the operator, stored only as hashes.

A key reads `flk_<key_id>_<secret>`. The key_id is public (it names the key in listings and in
revocation); the secret is 256 random bits, so a plain SHA-256 of it is a safe verifier.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone

from cachetools import TTLCache

from feedback_loop.dal import items as keys
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.models.errors import Unauthorized

KEY_PREFIX = "flk"
PROJECT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_KEY_PATTERN = re.compile(rf"^{KEY_PREFIX}_([0-9a-f]{{16}})_([A-Za-z0-9_-]{{43}})$")


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    project: str
    created_at: str
    revoked_at: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    plaintext: str  # shown once, never stored


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def validate_project(project: str) -> str:
    if not PROJECT_PATTERN.match(project):
        raise ValueError("project must be 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit")
    return project


def create_key(table: FeedbackTable, project: str, label: str | None = None) -> IssuedKey:
    validate_project(project)
    key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    created_at = keys.timestamp_text(datetime.now(timezone.utc))
    item = {
        **keys.api_key_key(key_id),
        "gsi1pk": keys.keys_partition(project),
        "gsi1sk": f"{created_at}#{key_id}",
        "entity": "api_key",
        "project": project,
        "key_id": key_id,
        "secret_hash": _hash(secret),
        "created_at": created_at,
    }
    if label:
        item["label"] = label
    if table.put_if_absent(item) is not None:  # 64 random bits collided: astronomically unlikely
        return create_key(table, project, label)
    return IssuedKey(ApiKey(key_id, project, created_at, None, label), f"{KEY_PREFIX}_{key_id}_{secret}")


def revoke_key(table: FeedbackTable, key_id: str) -> ApiKey:
    item = table.get(**keys.api_key_key(key_id))
    if item is None:
        raise KeyError(f"no API key {key_id!r}")
    if "revoked_at" not in item:
        item["revoked_at"] = keys.timestamp_text(datetime.now(timezone.utc))
        table.update(item["pk"], item["sk"], {"revoked_at": item["revoked_at"]})
    return _api_key(item)


def list_keys(table: FeedbackTable, project: str) -> list[ApiKey]:
    return [_api_key(i) for i in table.query_index(keys.keys_partition(validate_project(project)))]


def _api_key(item: dict) -> ApiKey:
    return ApiKey(item["key_id"], item["project"], item["created_at"], item.get("revoked_at"), item.get("label"))


def key_from_headers(headers: dict[str, str] | None) -> str | None:
    """The key from `Authorization: Bearer <key>` or `x-api-key: <key>` (header names in any case).
    Both with different keys is refused (Unauthorized): no silent choice of whose request this is."""
    lowered = {k.lower(): v for k, v in (headers or {}).items()}
    header = (lowered.get("x-api-key") or "").strip() or None
    scheme, _, credentials = (lowered.get("authorization") or "").partition(" ")
    bearer = credentials.strip() or None if scheme.lower() == "bearer" else None
    if header and bearer and header != bearer:
        raise Unauthorized("two different API keys: send one, in Authorization or x-api-key")
    return header or bearer


class KeyAuthenticator:
    """Turns a presented key into its project. Lookups are cached for `cache_seconds`, so a
    revocation takes effect within that time on a warm function."""

    def __init__(self, table: FeedbackTable, cache_seconds: float = 60):
        self.table = table
        self._cache: TTLCache[str, dict] | None = (
            TTLCache(maxsize=1024, ttl=cache_seconds) if cache_seconds > 0 else None
        )

    def project_for(self, presented: str | None) -> str:
        return self.authenticate(presented)[0]

    def authenticate(self, presented: str | None) -> tuple[str, str]:
        """(project, key_id) of a valid, unrevoked key; Unauthorized otherwise."""
        match = _KEY_PATTERN.match(presented or "")
        if not match:
            raise Unauthorized("missing or malformed API key")
        key_id, secret = match.groups()
        item = self._cache.get(key_id) if self._cache is not None else None
        if item is None:
            item = self.table.get(**keys.api_key_key(key_id))
            if item is None:
                raise Unauthorized("unknown API key")
            if self._cache is not None:
                self._cache[key_id] = item
        if not hmac.compare_digest(item["secret_hash"], _hash(secret)):
            raise Unauthorized("unknown API key")
        if "revoked_at" in item:
            raise Unauthorized("revoked API key")
        return item["project"], key_id
