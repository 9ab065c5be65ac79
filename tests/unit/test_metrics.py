"""edge_bridge/metrics.py: which instance a scrape came from."""

from __future__ import annotations

from prometheus_client import generate_latest

from edge_bridge.metrics import Metrics


def test_the_scrape_names_the_instance_in_an_info_series() -> None:
    metrics = Metrics(instance_id="bridge-b:8001")

    text = generate_latest(metrics.registry).decode()

    assert 'edge_instance_info{instance_id="bridge-b:8001"} 1.0' in text.splitlines()
