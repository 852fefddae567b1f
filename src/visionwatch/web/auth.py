"""Dashboard sign-in: the login and logout forms, and the signed-in user of each page."""

import time
from typing import Annotated
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from visionwatch.http.deps import DatabaseDep
from visionwatch.store import accounts
from visionwatch.store.accounts import User
from visionwatch.web.errors import LoginRequired, PageError
from visionwatch.web.rendering import render
from visionwatch.web.sessions import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Session,
    Signer,
    csrf_matches,
)

router = APIRouter(include_in_schema=False)
MAX_FORM_FIELD = 1024


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


async def current_user(request: Request, database: DatabaseDep) -> User:
    """The signed-in user, or a redirect to the login page (back here afterwards)."""
    token = request.cookies.get(SESSION_COOKIE)
    session = _signer(request).unsign(token) if token else None
    user = None
    if session is not None:
        # Read each time: a deleted user is signed out at once.
        user = await run_in_threadpool(accounts.get_user, database, session.user_id)
    if user is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target)
    return user


UserDep = Annotated[User, Depends(current_user)]


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form, its CSRF token checked; one value per field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    form = {name: values[0] for name, values in parse_qs(body, keep_blank_values=True).items()}
    if not csrf_matches(request.cookies.get(CSRF_COOKIE), form.get("csrf_token")):
        raise PageError(
            403,
            "This form has expired",
            "The page was open too long or cookies are off. Reload it and try again.",
        )
    return form


def safe_next(target: str | None) -> str:
    """Only a path on this site: never another host after signing in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login")
def login_page(request: Request, next: str | None = None) -> Response:
    return render(request, "login.html", {"next": safe_next(next), "error": None, "email": ""})


@router.post("/login")
async def login(request: Request, database: DatabaseDep) -> Response:
    form = await read_form(request)
    email = form.get("email", "")[:MAX_FORM_FIELD]
    password = form.get("password", "")[:MAX_FORM_FIELD]
    workspace = form.get("workspace", "").strip()
    target = safe_next(form.get("next"))
    matches = await run_in_threadpool(accounts.authenticate_user, database, email, password)
    if workspace:
        matches = [user for user in matches if user.workspace.name == workspace]
    error = None
    if not matches:
        error = "Wrong email or password."
    elif len(matches) > 1:
        error = "This email belongs to several workspaces: name the one to open."
    if error is not None:
        context = {"next": target, "error": error, "email": email, "workspace": workspace}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(target, status_code=303)
    cookie = _signer(request).sign(Session(matches[0].id, int(time.time())))
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await read_form(request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def login_redirect(target: str) -> RedirectResponse:
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
