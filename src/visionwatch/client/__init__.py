"""The visionwatch SDK: log inferences from any Python program without slowing it down.

    from visionwatch.client import Client

    client = Client("http://visionwatch:8000", api_key, device_id="edge-01")
    client.log("vehicles/3", result)

Imports only httpx and orjson: no server dependencies on an edge device.
"""

from visionwatch.client.client import Client, ClientStats

__all__ = ["Client", "ClientStats"]
