"""The multi-machine shape on loopback: nginx in front of three `visionwatch serve`
replicas on one PostgreSQL primary with a hot standby (tests/support/cluster.py, as
`scripts/cluster up` starts it). What a user of such a deployment would notice: nothing
acknowledged is lost or counted twice when a replica crashes, a session holds on every
replica, every replica serves every image, and the standby follows the primary.
"""

import io
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import psycopg
import pytest
from PIL import Image

from tests.support.cluster import READ_MAX_LAG, Cluster, ClusterUnavailable, started
from tests.support.dashboard import HTML, PASSWORD, sign_in
from tests.support.services import unavailable
from tests.support.workspaces import auth, new_workspace, server_total
from visionwatch.client import Client

# Real processes: a PostgreSQL pair, nginx and three servers, shared by this module.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]
EMAIL = "ops@example.com"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    try:
        with started() as running:
            yield running
    except ClusterUnavailable as missing:
        unavailable(str(missing))


@pytest.fixture(scope="module")
def key(cluster: Cluster) -> str:
    return new_workspace(cluster.server_env(), "acme", user=EMAIL)


def stored(cluster: Cluster, prefix: str) -> tuple[int, int]:
    """Rows of inferences whose id starts with `prefix`, and distinct ids among them, read
    from the primary itself (not through the API under test)."""
    with psycopg.connect(cluster.primary_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT inference_id) FROM inferences"
            " WHERE inference_id LIKE %s",
            (prefix + "%",),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_replica_killed_mid_stream_loses_nothing_acknowledged(cluster: Cluster, key: str) -> None:
    """The SDK sends through nginx while one replica is SIGKILLed and started again, three
    times: every inference it got a 2xx for is stored, and counted, exactly once. A batch
    cut off mid-request may have been committed: the SDK sends it again, and the server
    keeps one of each id."""
    total, crashes = 12_000, 3
    result = {"predictions": [{"class": "car", "confidence": 0.9}]}
    with Client(cluster.url, key, batch_size=500, flush_interval=0.02) as client:
        for crash in range(crashes):
            for n in range(total // crashes):
                client.log("crash/1", result, inference_id=f"crash-{crash}-{n}")
            time.sleep(0.05)  # batches under way on every replica
            cluster.kill_server(1)  # a crash: what was in flight on it is cut off
            time.sleep(0.2)
            cluster.start_server(1)
        assert client.flush(timeout=120)
        stats = client.stats
    print(f"\nretried sends: {stats.retried}")  # -s shows how often the crashes were felt
    assert (stats.sent, stats.failed, stats.dropped) == (total, 0, 0)
    assert stored(cluster, "crash-") == (total, total), "each once, none lost, none twice"
    assert server_total(cluster.url, key) == total, "the rollups count each once"


def test_a_session_holds_on_every_replica(cluster: Cluster, key: str) -> None:
    """Signed in through the load balancer, a user's next request may land on any replica:
    they share the session secret, so each knows the session."""
    with httpx.Client(base_url=cluster.url) as browser:
        assert sign_in(browser, EMAIL, PASSWORD).status_code == 303
        cookies = browser.cookies
    for index in range(len(cluster.server_ports)):
        page = httpx.get(
            cluster.server_url(index) + "/", headers=HTML, cookies=cookies, follow_redirects=False
        )
        assert page.status_code == 200, (index, page.status_code, page.headers.get("location"))
        assert "acme" in page.text


def test_every_replica_serves_every_image(cluster: Cluster, key: str) -> None:
    picture = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 90)).save(picture, "JPEG")
    item = {"inference_id": "pictured", "model_id": "cam/1"}
    first = cluster.server_url(0)
    assert (
        httpx.post(
            f"{first}/api/v1/inferences", json={"inferences": [item]}, headers=auth(key)
        ).status_code
        == 200
    )
    uploaded = httpx.put(
        f"{first}/api/v1/inferences/pictured/image",
        content=picture.getvalue(),
        headers={**auth(key), "content-type": "image/jpeg"},
    )
    assert uploaded.status_code in (200, 201), uploaded.text
    for index in range(len(cluster.server_ports)):
        served = httpx.get(
            f"{cluster.server_url(index)}/api/v1/inferences/pictured/image", headers=auth(key)
        )
        assert served.status_code == 200, index
        assert served.content == picture.getvalue(), index


def test_the_standby_follows_the_primary(cluster: Cluster, key: str) -> None:
    """What a replica commits on the primary can be read on the standby moments later."""
    marker = f"standby-{datetime.now(UTC).timestamp()}"
    item = {"inference_id": marker, "model_id": "follow/1"}
    written = httpx.post(
        f"{cluster.url}/api/v1/inferences", json={"inferences": [item]}, headers=auth(key)
    )
    assert written.status_code == 200
    deadline = time.monotonic() + 10
    with psycopg.connect(cluster.standby_url, autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        while True:
            found = standby.execute(
                "SELECT count(*) FROM inferences WHERE inference_id = %s", (marker,)
            ).fetchone()
            if found == (1,):
                break
            assert time.monotonic() < deadline, "the standby did not replay the write in 10 s"
            time.sleep(0.05)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("DELETE FROM inferences")


def readyz(cluster: Cluster, index: int) -> dict[str, Any]:
    answer = httpx.get(f"{cluster.server_url(index)}/readyz")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def total_on(cluster: Cluster, index: int, key: str) -> int:
    stats = httpx.get(
        f"{cluster.server_url(index)}/api/v1/stats",
        params={"model_id": "reads/1"},
        headers=auth(key),
    )
    assert stats.status_code == 200, stats.text
    return int(stats.json()["total_requests"]["current"])


def send_reads(cluster: Cluster, key: str, first: int, count: int) -> None:
    items = [
        {"inference_id": f"read-{n}", "model_id": "reads/1"} for n in range(first, first + count)
    ]
    sent = httpx.post(
        f"{cluster.url}/api/v1/inferences", json={"inferences": items}, headers=auth(key)
    )
    assert sent.status_code == 200, sent.text


def test_the_dashboard_reads_from_the_standby_within_its_lag_bound(
    cluster: Cluster, key: str
) -> None:
    """Stats come from the standby while it is at most READ_MAX_LAG seconds behind: with
    its replay paused, the servers show its (older) figure, then, past the bound, the
    primary's; /readyz and /metrics say which and why."""
    send_reads(cluster, key, 0, 300)
    assert server_total(cluster.url, key, model_id="reads/1") == 300
    for index in range(len(cluster.server_ports)):
        state = readyz(cluster, index)["standby"]
        assert state["serving_reads"] is True, state
        assert state["lag_seconds"] <= READ_MAX_LAG
    metrics = httpx.get(f"{cluster.server_url(0)}/metrics").text
    assert "visionwatch_standby_serving_reads 1.0" in metrics
    assert "visionwatch_standby_replay_lag_seconds" in metrics

    send_reads(cluster, key, 300, 1)  # the standby's last replayed write: now
    while total_on(cluster, 0, key) != 301:  # counted, and the count replayed
        time.sleep(0.02)
    with psycopg.connect(cluster.standby_url, autocommit=True) as standby:
        standby.execute("SELECT pg_wal_replay_pause()")
        paused_at = time.monotonic()
        try:
            send_reads(cluster, key, 301, 99)
            time.sleep(1.0)  # the primary counts them (its aggregator), the standby waits
            assert time.monotonic() - paused_at < READ_MAX_LAG - 0.5
            assert [total_on(cluster, i, key) for i in range(3)] == [301] * 3, (
                "within the bound the standby answers, a moment behind"
            )
            time.sleep(max(0.0, READ_MAX_LAG + 1.2 - (time.monotonic() - paused_at)))
            assert [total_on(cluster, i, key) for i in range(3)] == [400] * 3, (
                "past the bound the primary answers"
            )
            state = readyz(cluster, 0)["standby"]
            assert state["serving_reads"] is False
            assert "behind the primary" in state["detail"], state
        finally:
            standby.execute("SELECT pg_wal_replay_resume()")
    deadline = time.monotonic() + 10
    while not readyz(cluster, 0)["standby"]["serving_reads"]:
        assert time.monotonic() < deadline, readyz(cluster, 0)
        time.sleep(0.2)


def test_with_the_standby_stopped_reads_still_answer_and_readyz_says_why(
    cluster: Cluster, key: str
) -> None:
    before = server_total(cluster.url, key, model_id="reads/1")
    cluster.stop_standby()
    try:
        time.sleep(1.1)  # past a check of the standby
        for index in range(len(cluster.server_ports)):
            assert total_on(cluster, index, key) == before
            state = readyz(cluster, index)["standby"]
            assert state["serving_reads"] is False
            assert state["detail"].startswith("unavailable"), state
        metrics = httpx.get(f"{cluster.server_url(0)}/metrics").text
        assert "visionwatch_standby_serving_reads 0.0" in metrics
    finally:
        cluster.start_standby()
    deadline = time.monotonic() + 15
    while not readyz(cluster, 0)["standby"]["serving_reads"]:
        assert time.monotonic() < deadline, readyz(cluster, 0)
        time.sleep(0.2)
