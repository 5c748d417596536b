"""Property-based run over the whole OpenAPI schema (schemathesis): valid and invalid
requests, signed in as an admin and anonymous, and every answer checked against the
published schema (status code, content type, headers, body) as well as never 5xx.
Bounded: a few examples per operation and mode, so it stays well under a minute."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from jsonschema import Draft202012Validator
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from .accounts_support import bearer, login, make_app

__all__ = ["make_app"]


# Every check schemathesis has runs (`validate_response` without `checks`: the response
# conformance checks, not_a_server_error, positive_data_acceptance, negative_data_rejection
# and the rest), except where listed here. These accounts operations accept, by their
# schema, values the accounts service then refuses with 422, so positive_data_acceptance
# cannot hold for them until their request schemas say so:


@pytest.fixture
def signed_in_app(make_app: Any, library: Path, tmp_path: Path) -> Any:
    return make_app(library, f"sqlite:///{tmp_path / 'a.db'}", kosync_registration=True)


def test_responses_conform_to_the_schema(signed_in_app: Any) -> None:
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", signed_in_app.app)
    token = login(signed_in_app)["access_token"]
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 30
    seen: list[str] = []
    failures: dict[str, str] = {}

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=op.as_strategy(mode))
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
                    try:
                        case.validate_response(response, headers=headers)
                    except FailureGroup as e:
                        for f in e.exceptions:
                            where = f"{case.method} {case.path} {response.status_code}"
                            failures.setdefault(
                                f"{where}: {f.title}",
                                f"{f}"[:300]
                                + "\n  "
                                + response.content[:200].decode(errors="replace"),
                            )

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong: no parameters
    assert not failures, "\n".join(f"{k}\n  {v}" for k, v in sorted(failures.items()))
    assert len(seen) >= 4 * len(operations)
    print(sorted(collections.Counter(x.rsplit(" ", 1)[1] for x in seen).items()))


def test_errors_have_the_documented_shape(signed_in_app: Any) -> None:
    """Errors the fuzz does not reach: unknown paths, wrong methods and unparseable bodies
    (Starlette's own exceptions), besides a validation error and a route's own 422."""
    c = signed_in_app
    doc = c.get("/api/openapi.json").json()
    auth = bearer(login(c)["access_token"])

    def check(r: Any, status: int, name: str) -> None:
        assert r.status_code == status, r.text
        validator = Draft202012Validator({**doc, "$ref": f"#/components/schemas/{name}"})
        validator.validate(r.json())

    check(c.get("/api/nope"), 404, "Error")
    r = c.delete("/api/books")
    check(r, 405, "Error")
    assert r.headers["allow"] == "GET"
    body = {"content": b"\xff", "headers": {**auth, "content-type": "application/json"}}
    check(c.put("/api/user/lists/1/order", **body), 400, "Error")
    check(c.get("/opds/recent", params={"page": 99}), 404, "Error")
    check(c.get("/api/books", params={"page": 0}), 422, "HTTPValidationError")
    check(c.post("/api/user/lists", json={"name": " "}, headers=auth), 422, "HTTPValidationError")
    assert "400" in doc["paths"]["/api/user/lists/{list_id}/order"]["put"]["responses"]
