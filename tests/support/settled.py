"""A TestClient whose requests see every earlier write in the rollups.

The server counts an inference in the rollups shortly after its 2xx (the aggregator;
docs/architecture.md). A person opening a dashboard after sending waits that long without
noticing; a test asks the next moment. So before each request this client lets the app's
aggregator work off what is queued, as its thread would within the freshness bound.
"""

from typing import Any

import httpx
from fastapi.testclient import TestClient


class SettledClient(TestClient):
    def request(self, *args: Any, **kwargs: Any) -> httpx.Response:
        aggregator = getattr(self.app.state, "aggregator", None)  # type: ignore[attr-defined]
        if aggregator is not None:
            aggregator.drain()
        response: httpx.Response = super().request(*args, **kwargs)
        return response
