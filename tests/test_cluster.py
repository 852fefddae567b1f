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

import httpx
import psycopg
import pytest
from PIL import Image

from tests.support.cluster import Cluster, ClusterUnavailable, started
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
