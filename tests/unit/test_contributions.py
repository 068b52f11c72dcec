"""The points rule and the leaderboard's arithmetic, without Redis: points from run time and
tokens by the broker's rates, sums per group, the order of rows, and the CLI's busy time."""

from __future__ import annotations

from datetime import date

import pytest

from garage.broker.api.contributions import points_rule, summarize
from garage.broker.settings import BrokerSettings
from garage.broker.store.contributions import ContributionEntry
from garage.cli.contributions import busy
from garage.contract import ContributionGroup, PointsRule

DEFAULT = points_rule(BrokerSettings())
D1, D2 = date(2027, 3, 1), date(2027, 3, 2)


@pytest.mark.parametrize(
    ("rule", "busy_ms", "tokens", "points"),
    [
        (DEFAULT, 0, 0, 0.0),
        (DEFAULT, 3_600_000, 0, 3_600.0),  # a GPU-hour
        (DEFAULT, 10_000, 500, 10.5),  # 10 s at 50 tokens/s: the time dominates
        (DEFAULT, 1, 1, 0.002),
        (PointsRule(points_per_busy_s=0.25, points_per_1k_tokens=4), 6_000, 1_500, 7.5),
        (PointsRule(points_per_busy_s=0, points_per_1k_tokens=1), 99_000, 2_000, 2.0),
        (PointsRule(points_per_busy_s=1 / 3, points_per_1k_tokens=0), 1_000, 7, 0.333),
    ],
)
def test_points_are_busy_seconds_and_thousands_of_tokens_at_their_rates(
    rule: PointsRule, busy_ms: int, tokens: int, points: float
) -> None:
    assert rule.points(busy_ms, tokens) == points


def test_the_default_rates_come_from_the_settings_and_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert PointsRule(points_per_busy_s=1.0, points_per_1k_tokens=1.0) == DEFAULT
    monkeypatch.setenv("GARAGE_BROKER_POINTS_PER_BUSY_S", "0.5")
    monkeypatch.setenv("GARAGE_BROKER_POINTS_PER_1K_TOKENS", "2")
    assert points_rule(BrokerSettings()) == PointsRule(
        points_per_busy_s=0.5, points_per_1k_tokens=2.0
    )
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        BrokerSettings(points_per_busy_s=-1)


ENTRIES = [
    ContributionEntry(D1, "k1", "w1", "olga", "rig-1", 2, 20_000, 1_000, 0),
    ContributionEntry(D1, "k1", "w2", "olga", "rig-1", 1, 5_000, 0, 0),
    ContributionEntry(D1, "k2", "w9", None, "lone", 1, 30_000, 100, 100),
    ContributionEntry(D2, "k1", "w1", "olga", "rig-1b", 1, 1_000, 3_000, 3_000),
    ContributionEntry(D2, "k3", "w5", "pat", None, 4, 40_000, 0, 0),
]


def test_rows_add_up_per_group_highest_points_first() -> None:
    names = {"olga": "Olga", "k1": "rig-one"}  # keys that exist now; k2 and k3 are gone
    groups = [ContributionGroup.owner, ContributionGroup.key]
    rows, total = summarize(ENTRIES, groups, names, DEFAULT)
    shown = [(r.owner, r.owner_name, r.key, r.key_name, r.jobs, r.busy_s, r.points) for r in rows]
    assert shown == [
        ("pat", None, "k3", None, 4, 40.0, 40.0),
        (None, None, "k2", "lone", 1, 30.0, 30.1),  # the name it was recorded with
        ("olga", "Olga", "k1", "rig-one", 4, 26.0, 30.0),  # the name it has now
    ]
    assert (total.jobs, total.busy_s, total.completion_tokens, total.estimated_tokens) == (
        9, 96.0, 4_100, 3_100,
    )  # fmt: skip
    assert total.points == 100.1 == sum(r.points for r in rows)


def test_rows_grouped_by_day_go_day_by_day() -> None:
    rows, _ = summarize(ENTRIES, [ContributionGroup.day, ContributionGroup.worker], {}, DEFAULT)
    assert [(r.day, r.worker, r.points, r.key) for r in rows] == [
        (D1, "w9", 30.1, None),
        (D1, "w1", 21.0, None),
        (D1, "w2", 5.0, None),
        (D2, "w5", 40.0, None),
        (D2, "w1", 4.0, None),
    ]
    rows, _ = summarize(ENTRIES, [ContributionGroup.key], {}, DEFAULT)
    assert [(r.key, r.key_name) for r in rows] == [("k3", None), ("k2", "lone"), ("k1", "rig-1b")]


def test_nothing_adds_up_to_zero() -> None:
    rows, total = summarize([], [ContributionGroup.key], {}, DEFAULT)
    assert rows == [] and (total.jobs, total.busy_s, total.points) == (0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0:00:00"), (59.6, "0:01:00"), (3_723.4, "1:02:03"), (90_061, "25:01:01")],
)
def test_busy_time_is_hours_minutes_seconds(seconds: float, shown: str) -> None:
    assert busy(seconds) == shown
