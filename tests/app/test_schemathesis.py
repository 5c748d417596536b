"""Property-based run over the whole OpenAPI schema (schemathesis): no request, valid or
not, signed in as an admin or not, makes the server answer 5xx. Bounded: a few examples
per operation, so it stays well under a minute."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .accounts_support import bearer, login, make_app

__all__ = ["make_app"]


@pytest.fixture
def signed_in_app(make_app: Any, library: Path, tmp_path: Path) -> Any:
    return make_app(library, f"sqlite:///{tmp_path / 'a.db'}", kosync_registration=True)


def test_no_server_errors(signed_in_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", signed_in_app.app)
    token = login(signed_in_app)["access_token"]
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 30
    seen: list[str] = []
    failures: list[str] = []

    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=4,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: Any) -> None:
            for headers in (bearer(token), {}):
                response = case.call(headers=headers)
                seen.append(f"{case.method} {case.path} {response.status_code}")
                if response.status_code >= 500:
                    failures.append(
                        f"{case.method} {case.formatted_path} {response.status_code}: "
                        f"{response.text[:200]}"
                    )

        run()
    assert not failures, "\n".join(failures)
    assert len(seen) >= 2 * len(operations)
    print(sorted(collections.Counter(x.rsplit(" ", 1)[1] for x in seen).items()))
