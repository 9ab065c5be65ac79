"""Login limits with two `edge-bridge serve` instances on one PostgreSQL (issue 12.4).

The per-email failure budget is one, shared through the database, however a load balancer
spreads the attempts. Several instances need PostgreSQL: skips on SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.cluster import Cluster

pytestmark = pytest.mark.integration

YILMAZ = {"email": "yilmaz@example.org", "password": "yilmaz-demo-2"}
WRONG = {**YILMAZ, "password": "guess"}


def _login(cluster: Cluster, instance: int, address: str, body: dict[str, str]) -> httpx.Response:
    # X-Forwarded-For is trusted from loopback (uvicorn's proxy headers), as from nginx.
    with cluster.http(instance) as client:
        return client.post("/api/auth/login", json=body, headers={"X-Forwarded-For": address})


def test_ten_failures_spread_over_two_instances_make_the_eleventh_on_either_429(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)

    spread = [_login(cluster, n % 2, f"198.51.100.{n + 1}", WRONG) for n in range(10)]
    on_first = _login(cluster, 0, "198.51.100.50", YILMAZ)
    on_second = _login(cluster, 1, "198.51.100.51", WRONG)

    assert [r.status_code for r in spread] == [401] * 10
    assert on_first.status_code == 429  # even the right password: the email is locked
    assert on_second.status_code == 429
    assert 0 < int(on_first.headers["retry-after"]) <= 300
    assert "Login rate limited limit=email client=198.51.100.50 " in cluster.log_text(0)
    assert "Login rate limited limit=email client=198.51.100.51 " in cluster.log_text(1)


def test_a_parallel_burst_on_both_instances_admits_exactly_the_limit(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    start = threading.Barrier(40)

    def attempt(n: int) -> int:
        with cluster.http(n % 2) as client:
            start.wait(timeout=10)
            body, address = WRONG, f"198.51.100.{n + 1}"
            return client.post(
                "/api/auth/login", json=body, headers={"X-Forwarded-For": address}
            ).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        codes = sorted(pool.map(attempt, range(40)))

    assert codes == [401] * 10 + [429] * 30


def test_a_known_address_still_gets_in_on_the_instance_that_knows_it(
    make_cluster: Callable[..., Cluster],
) -> None:
    cluster = make_cluster(2)
    school = "203.0.113.20"
    before = _login(cluster, 0, school, YILMAZ)  # instance 0 learns the address

    attacker = [_login(cluster, n % 2, "198.51.100.1", WRONG) for n in range(11)]
    from_school = _login(cluster, 0, school, YILMAZ)

    assert before.status_code == 200
    assert [r.status_code for r in attacker] == [401] * 10 + [429]
    assert from_school.status_code == 200
