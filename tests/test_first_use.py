"""The first-use page's snippets work as printed, against a real server."""

import html
import re
import shlex
import uuid
from typing import Any

import httpx
import pytest

from tests.support.dashboard import sign_in
from tests.support.workspaces import new_workspace, server_total, settled_stats

pytestmark = pytest.mark.slow  # the `server` fixture: `visionwatch serve` as a process


def snippet(page: str, name: str) -> str:
    found = re.search(rf'<code id="snippet-{name}">(.*?)</code>', page, re.DOTALL)
    assert found, f"no {name} snippet"
    return html.unescape(found.group(1))


@pytest.fixture
def first_page(server: tuple[str, dict[str, str]]) -> tuple[str, str, str]:
    """(base URL, the empty overview of a new workspace, a key of it)."""
    base, env = server
    workspace = f"first-{uuid.uuid4().hex[:8]}"
    email = f"{workspace}@example.com"
    key = new_workspace(env, workspace, user=email)
    with httpx.Client(base_url=base) as browser:
        assert sign_in(browser, email).status_code == 303
        page = browser.get("/", headers={"accept": "text/html"}).text
    assert "Send your first inference" in page
    assert snippet(page, "key") == f"visionwatch keys create {workspace}"
    return base, page, key


def test_the_sdk_snippet_sends_an_inference(first_page: tuple[str, str, str]) -> None:
    base, page, key = first_page
    code = snippet(page, "sdk")
    assert f'Client("{base}"' in code
    namespace: dict[str, Any] = {}
    exec(code.replace("YOUR_KEY", key), namespace)
    namespace["client"].close()  # a script's end would; the test process goes on
    assert server_total(base, key) == 1
    stats = settled_stats(base, key)
    assert stats["avg_confidence"]["current"] == pytest.approx(0.91)


def test_the_curl_snippet_sends_an_inference(first_page: tuple[str, str, str]) -> None:
    base, page, key = first_page
    words = shlex.split(snippet(page, "curl").replace("YOUR_KEY", key))
    assert words[:3] == ["curl", "-X", "POST"]
    url = words[3]
    headers = dict(words[i + 1].split(": ", 1) for i, word in enumerate(words) if word == "-H")
    body = words[words.index("-d") + 1]
    response = httpx.post(url, headers=headers, content=body)
    assert response.status_code == 200, response.text
    assert server_total(base, key) == 1
