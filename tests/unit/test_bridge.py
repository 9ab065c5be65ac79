"""edge_bridge/bridge.py: the background jobs' timing derived from the settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from edge_bridge.bridge import prune_interval_seconds
from edge_bridge.config import Settings
from edge_bridge.tuning import PRUNE_INTERVAL_MAX_SECONDS


@pytest.mark.parametrize(
    ("retention_seconds", "interval"),
    [(2, 0.5), (600, 150.0), (86_400, PRUNE_INTERVAL_MAX_SECONDS)],
)
def test_old_events_are_pruned_every_quarter_retention_and_at_least_every_five_minutes(
    settings_factory: Callable[..., Settings], retention_seconds: int, interval: float
) -> None:
    settings = settings_factory(event_retention_seconds=retention_seconds)

    assert prune_interval_seconds(settings) == interval
