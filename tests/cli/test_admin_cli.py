"""`garage admin key list|revoke|limits`, in-process with click's runner."""

from __future__ import annotations

import json

from click.testing import CliRunner

from garage.cli import main

from ..conftest import ADMIN_KEY, LiveBroker


def garage(live_broker: LiveBroker, *args: str, key: str = ADMIN_KEY):
    return CliRunner().invoke(main, [*args, "--url", live_broker.url, "--api-key", key])


def test_an_admin_lists_limits_and_revokes_keys(live_broker: LiveBroker, redis) -> None:
    created = garage(live_broker, "admin", "key", "create", "--role", "user", "--name", "ann",
                     "--json")  # fmt: skip
    key = json.loads(created.output)
    listed = garage(live_broker, "admin", "key", "list")
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[0].split() == [
        "ID", "ROLE", "NAME", "CREATED", "SUBMITS/MIN", "ACTIVE", "JOBS", "OWNER"
    ]  # fmt: skip
    [row] = [line for line in listed.output.splitlines() if key["id"] in line]
    assert row.split()[1:3] == ["user", "ann"] and row.split()[-2:] == ["default", "default"]

    limited = garage(live_broker, "admin", "key", "limits", key["id"], "--rpm", "60",
                     "--max-active-jobs", "0")  # fmt: skip
    assert limited.exit_code == 0, limited.output
    assert "submits/min 60, active jobs none" in limited.output
    as_json = json.loads(garage(live_broker, "admin", "key", "list", "--json").output)
    assert [k["limits"] for k in as_json if k["id"] == key["id"]] == [
        {"requests_per_minute": 60, "max_active_jobs": 0, "models": None}
    ]

    rotated = garage(live_broker, "admin", "key", "rotate", key["id"], "--quiet")
    assert rotated.exit_code == 0 and rotated.output.strip().startswith("gk-u-")
    assert garage(live_broker, "job", "list", key=key["key"]).exit_code == 4  # the old secret
    assert garage(live_broker, "job", "list", key=rotated.output.strip()).exit_code == 0
    key["key"] = rotated.output.strip()

    revoked = garage(live_broker, "admin", "key", "revoke", key["id"])
    assert revoked.exit_code == 0 and f"revoked {key['id']}" in revoked.output
    refused = garage(live_broker, "job", "list", key=key["key"])
    assert refused.exit_code == 4
    again = garage(live_broker, "admin", "key", "revoke", key["id"])
    assert again.exit_code == 5 and "no key" in again.output


def test_a_user_key_may_not_manage_keys(live_broker: LiveBroker, redis) -> None:
    created = garage(live_broker, "admin", "key", "create", "--role", "user", "--name", "bo",
                     "--quiet")  # fmt: skip
    listed = garage(live_broker, "admin", "key", "list", key=created.output.strip())
    assert listed.exit_code == 4
