"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from feedback_loop.analysis import run
from feedback_loop.analysis.run import ENGINES


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """An analysis test once per engine of the pass over the eval records (module by module)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run, "ENGINE", request.param)
        yield request.param
