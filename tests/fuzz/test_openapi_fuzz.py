"""Fuzzing every operation of the broker's OpenAPI document with schemathesis, under each
role's key: no answer is a 5xx, every status is one the document lists, and every
4xx has garage's JSON error body.

Quick in CI; `GARAGE_FUZZ_EXAMPLES=500 pytest tests/fuzz` runs the large profile."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from ..conftest import ADMIN_KEY, LiveBroker

EXAMPLES = int(os.environ.get("GARAGE_FUZZ_EXAMPLES", "3"))
pytestmark = pytest.mark.timeout(120 + 12 * EXAMPLES)  # the large profile takes a while
_WAIT_MAX_S = 0.2  # long-polls the fuzzer asks for are cut to this, or every case waits


@pytest.fixture(scope="module")
def keys(live_broker: LiveBroker) -> dict[str, str]:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def key(role: str) -> str:
        made = httpx.post(
            f"{live_broker.url}/v1/admin/keys", json={"role": role, "name": "fuzz"}, headers=admin
        )
        made.raise_for_status()
        return made.json()["key"]

    return {"user": key("user"), "worker": key("worker"), "admin": ADMIN_KEY}


def error_body(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx carries `{"error": {"message", "type", "code"}}`."""
    if 400 <= response.status_code < 500:
        body = response.json()
        error = body["error"]
        assert isinstance(error["message"], str) and error["message"], body
        assert isinstance(error["code"], str) and error["code"], body
    return None


def _short_waits(case: Any) -> None:
    for part in (case.query, case.body if isinstance(case.body, dict) else None):
        if isinstance(part, dict) and isinstance(part.get("wait_s"), int | float):
            part["wait_s"] = min(max(part["wait_s"], 0), _WAIT_MAX_S)
    if case.headers:
        case.headers.pop("Prefer", None)


_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)


def _fuzz(case: Any, key: str, url: str, seen: Counter[int]) -> None:
    _short_waits(case)
    response = case.call_and_validate(
        base_url=url,
        headers={"Authorization": f"Bearer {key}"},
        checks=[not_a_server_error, status_code_conformance, error_body],
        timeout=30,
    )
    seen[response.status_code] += 1


@pytest.mark.parametrize("role", ["user", "worker", "admin"])
def test_no_operation_answers_5xx_and_every_4xx_is_a_json_error(
    role: str, keys: dict[str, str], live_broker: LiveBroker
) -> None:
    document = httpx.get(f"{live_broker.url}/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20  # every documented route, not a stub of the document
    seen: Counter[int] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @_SETTINGS
        def fuzz(case: Any) -> None:
            _fuzz(case, keys[role], live_broker.url, seen)

        fuzz()
    # With -s, the figures for docs/reliability.md.
    print(f"\nfuzz as {role}: {len(operations)} operations, {seen.total()} cases, {dict(seen)}")
