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

# What a key may do. A key without scopes (every key made before them, and `keys create` without
# --scope) may do everything: a server's key. A key in a web page can be read by anyone, so a
# browser's key should have feedback:write alone.
SCOPES = {
    "feedback:write": "send feedback events",
    "feedback:read": "read a request's feedback summary (users' comments and ids)",
    "evals:write": "log eval records (POST /v1/evals, OpenTelemetry in)",
    "changes:write": "register prompt and model changes",
    "changes:read": "list the registered changes",
    "retrain": "ask for the evaluator to be retrained",
    "calibration:read": "read the calibrator in service and calibrate scores with it",
}
# (method, API Gateway resource) -> the scope it needs; public routes need none
ROUTE_SCOPES = {
    ("POST", "/v1/feedback"): "feedback:write",
    ("POST", "/v1/feedback/batch"): "feedback:write",
    ("GET", "/v1/requests/{request_id}/feedback"): "feedback:read",
    ("POST", "/v1/evals"): "evals:write",
    ("POST", "/v1/traces"): "evals:write",
    ("POST", "/v1/logs"): "evals:write",
    ("POST", "/v1/changes"): "changes:write",
    ("GET", "/v1/changes"): "changes:read",
    ("GET", "/v1/changes/{name}"): "changes:read",
    ("POST", "/v1/retrain"): "retrain",
    ("GET", "/v1/calibration"): "calibration:read",
    ("POST", "/v1/calibrate"): "calibration:read",
}
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
    scopes: tuple[str, ...] | None = None  # None: every scope


@dataclass(frozen=True)
class Caller:
    """Who a valid key says is calling: its project, its id and what it may do."""

    project: str
    key_id: str
    scopes: frozenset[str]


def scopes_text(scopes: frozenset[str] | tuple[str, ...] | None) -> str:
    """The scopes as the authorizer hands them to the function (context values are strings)."""
    return " ".join(sorted(SCOPES if scopes is None else scopes))


def read_scopes(text: str | None) -> frozenset[str]:
    """The authorizer's scopes text; a context without it (an authorizer from before scopes) is every scope."""
    return frozenset(SCOPES) if text is None else frozenset(text.split())


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


def create_key(table: FeedbackTable, project: str, label: str | None = None,
               scopes: list[str] | tuple[str, ...] | None = None) -> IssuedKey:
    """A new key of `project`; with `scopes`, it may do only those (SCOPES), else everything."""
    validate_project(project)
    if scopes is not None:
        unknown = sorted(set(scopes) - set(SCOPES))
        if unknown or not scopes:
            raise ValueError(f"scopes must be some of {', '.join(SCOPES)}; not {', '.join(unknown) or 'none'}")
        scopes = tuple(sorted(set(scopes)))
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
    if scopes is not None:
        item["scopes"] = list(scopes)
    if table.put_if_absent(item) is not None:  # 64 random bits collided: astronomically unlikely
        return create_key(table, project, label, scopes)
    return IssuedKey(ApiKey(key_id, project, created_at, None, label, scopes), f"{KEY_PREFIX}_{key_id}_{secret}")


def reused_or_new_key(table: FeedbackTable, project: str, label: str, saved: str | None) -> tuple[str, bool]:
    """`saved` (a key printed before) while it is a valid key of `project`, else a new key labelled
    `label` with the earlier ones of that label revoked. Returns (the key, whether it is new)."""
    if saved:
        try:
            if KeyAuthenticator(table, cache_seconds=0).caller(saved).project == project:
                return saved, False
        except Unauthorized:
            pass
    issued, _ = replace_key(table, project, label)
    return issued.plaintext, True


def replace_key(table: FeedbackTable, project: str, label: str) -> tuple[IssuedKey, list[ApiKey]]:
    """A new key labelled `label`, and the earlier unrevoked keys of that label revoked (what `serve`
    does at each start: its key is printed once, so an earlier one is of no use to anybody)."""
    issued = create_key(table, project, label)
    earlier = [key for key in list_keys(table, project)
               if key.label == label and key.revoked_at is None and key.key_id != issued.key.key_id]
    return issued, [revoke_key(table, key.key_id) for key in earlier]


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
    scopes = tuple(item["scopes"]) if item.get("scopes") is not None else None
    return ApiKey(item["key_id"], item["project"], item["created_at"], item.get("revoked_at"), item.get("label"),
                  scopes)


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
        caller = self.caller(presented)
        return caller.project, caller.key_id

    def caller(self, presented: str | None) -> Caller:
        """The Caller of a valid, unrevoked key; Unauthorized otherwise."""
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
        scopes = frozenset(SCOPES) if item.get("scopes") is None else frozenset(item["scopes"])
        return Caller(item["project"], key_id, scopes)
