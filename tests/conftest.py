"""Shared fixtures: one embedded local stack for the session, a fresh project and key per test."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from feedback_loop.client import FeedbackClient
from feedback_loop.dal.store import FeedbackTable
from feedback_loop.local.stack import LocalStack
from feedback_loop.logic.keys import create_key

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    # Keys are not cached, so revocations show at once; everything else is the template's default.
    with LocalStack(template=ROOT / "template.yaml", parameters={"KeyCacheSeconds": "0"}) as running:
        yield running


@pytest.fixture(scope="session")
def table(stack: LocalStack) -> FeedbackTable:
    return FeedbackTable(stack.table_name)


@pytest.fixture
def project() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def api_key(table: FeedbackTable, project: str) -> str:
    return create_key(table, project).plaintext


@pytest.fixture
def http(stack: LocalStack, api_key: str) -> "Api":
    return Api(stack.api_url, api_key)


@pytest.fixture
def client(stack: LocalStack, api_key: str) -> FeedbackClient:
    return FeedbackClient(stack.api_url, api_key, retries=2, backoff_factor=0.01)


class Api:
    """Raw HTTP against the local gateway, authenticated as one project."""

    def __init__(self, base_url: str, key: str | None):
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}

    def post(self, path: str, body: object = None, *, data: str | bytes | None = None,
             headers: dict[str, str] | None = None) -> requests.Response:
        return requests.post(f"{self.base_url}{path}", json=body if data is None else None, data=data,
                             headers={**self.headers, **(headers or {})}, timeout=30)

    def get(self, path: str, headers: dict[str, str] | None = None) -> requests.Response:
        return requests.get(f"{self.base_url}{path}", headers={**self.headers, **(headers or {})}, timeout=30)


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright, for the browser tests (the report, the widget)."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: `make test` installs Debian's chromium package", pytrace=False)
        pytest.skip("Chromium is not installed (`make test` installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"])
        yield launched
        launched.close()
