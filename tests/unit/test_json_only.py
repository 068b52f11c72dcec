"""Inbound models hold only what JSON can carry, however they are built: a client that
builds a job in Python hears about NaN before it sends anything."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from garage.contract import InferenceRequest, JobCreate
from garage.contract.batch_file import BatchLineError, parse_batch_jsonl

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (float("nan"), "request.tools.0.x: NaN is not a JSON number"),
        (float("-inf"), "request.tools.0.x: -Infinity is not a JSON number"),
    ],
)
def test_a_job_built_in_python_refuses_non_finite_numbers(value: float, says: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(says)):
        JobCreate(model="m", request={"messages": MESSAGES, "tools": [{"x": value}]})
    with pytest.raises(ValidationError, match=r"NaN|Infinity"):
        InferenceRequest(model="m", messages=MESSAGES, temperature=value)


def test_nesting_is_bounded_without_exhausting_the_stack() -> None:
    loop: list = []
    loop.append(loop)  # deeper than any recursion limit
    with pytest.raises(ValidationError, match=r"request\.loop: nested more than 100 levels"):
        JobCreate(model="m", request={"messages": MESSAGES, "loop": loop})
    deep: list = []
    for _ in range(98):
        deep = [deep]
    assert JobCreate(model="m", request={"messages": MESSAGES, "deep": deep})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"custom_id": "a", "n": ' + "9" * 5000 + "}", "line 1: not valid JSON: a number"),
        ('{"custom_id": "a", "n": ' + "[" * 100_000, "line 1: not valid JSON: nested too"),
        ('{"custom_id": "a", "n": Infinity}', "line 1: not valid JSON: Infinity is not"),
    ],
)
def test_a_batch_line_json_cannot_hold_is_a_line_error(text: str, says: str) -> None:
    with pytest.raises(BatchLineError, match=re.escape(says)):
        parse_batch_jsonl(text)
