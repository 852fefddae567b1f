"""Signing in to the dashboard, as a browser would: the form, its CSRF token, the cookie."""

import re

import httpx
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
HTML = {"accept": "text/html"}


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(
    client: TestClient | httpx.Client, email: str, password: str = PASSWORD
) -> httpx.Response:
    token = csrf_token(client.get("/login", headers=HTML).text)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, "next": "/"},
        headers=HTML,
        follow_redirects=False,
    )
