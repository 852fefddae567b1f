"""Signing in to the dashboard, as a browser would: the form, its CSRF token, the cookie."""

import re

import httpx
from fastapi.testclient import TestClient

from visionwatch.db.engine import Database
from visionwatch.store import accounts

PASSWORD = "correct horse battery"
HTML = {"accept": "text/html"}


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "the page has no CSRF token"
    return match.group(1)


def new_user(database: Database, workspace: str, email: str) -> None:
    with database.read() as conn:
        exists = accounts.get_workspace(conn, workspace) is not None
    if not exists:
        accounts.create_workspace(database, workspace)
    accounts.create_user(database, workspace, email, PASSWORD)


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
