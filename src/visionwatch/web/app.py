"""Mount the dashboard on the app: its routes, static files, sessions and error pages."""

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.staticfiles import StaticFiles

from visionwatch.config import Settings
from visionwatch.http.responses import JSON, json_error
from visionwatch.web import (
    alerts,
    auth,
    capture,
    compare,
    events,
    exports,
    feedback,
    fleet,
    pages,
    selection,
)
from visionwatch.web.errors import LoginRequired, PageError, wants_page
from visionwatch.web.rendering import render
from visionwatch.web.sessions import Signer, load_secret

log = logging.getLogger("visionwatch.web")
STATIC = Path(__file__).parent / "static"
RETRY_AFTER_SECONDS = 5
STATUS_TITLES = {
    404: "Page not found",
    405: "Not allowed here",
    401: "Sign in first",
    403: "Not allowed",
}


# Every module with pages, in the order their routes are tried.
PAGE_MODULES = (auth, alerts, capture, compare, events, exports, feedback, fleet, selection, pages)


def install_dashboard(app: FastAPI, settings: Settings) -> None:
    app.state.signer = Signer(load_secret(settings.secret_key, settings.data_dir))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for module in PAGE_MODULES:
        app.include_router(module.router)

    @app.exception_handler(LoginRequired)
    async def login_required(_: Request, error: LoginRequired) -> Response:
        return auth.login_redirect(error.target)

    @app.exception_handler(PageError)
    async def page_error(request: Request, error: PageError) -> Response:
        return error_page(request, error.status_code, error.title, error.message)

    app.add_exception_handler(Exception, _server_error)
    for unreachable in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(unreachable, _database_unavailable)

    # Replaces the API's handler: the same JSON for programs, a page for browsers.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> Response:
        if error.status_code == 405:
            error = HTTPException(405, error.detail, headers={"Allow": allowed_methods(request)})
        if wants_page(request):
            title = STATUS_TITLES.get(error.status_code, "Something went wrong")
            message = (
                str(error.detail)
                if error.status_code != 404
                else (f"Nothing lives at {request.url.path}.")
            )
            return error_page(request, error.status_code, title, message)
        return json_error(error)


def allowed_methods(request: Request) -> str:
    """Every method the path takes. Starlette's 405 names only those of the first route
    matching the path, and GET and POST /api/v1/inferences are two routes."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


def _server_error(request: Request, error: Exception) -> Response:
    # Starlette logs the exception itself; people get a page, programs JSON.
    if wants_page(request):
        return error_page(
            request,
            500,
            "Something went wrong",
            "The server failed to show this page. It has been logged; try again in a moment.",
        )
    return JSON({"detail": "internal server error"}, status_code=500)


def _database_unavailable(request: Request, error: Exception) -> Response:
    """The database is down, restarting or locked: a 503 to retry, not a 500 to debug.

    The transaction rolled back, so nothing of the request was stored.
    """
    log.warning("database unavailable for %s %s: %s", request.method, request.url.path, error)
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if wants_page(request):
        response = error_page(
            request,
            503,
            "The database is unavailable",
            "visionwatch cannot reach its database right now. Try again in a moment.",
        )
        response.headers.update(headers)
        return response
    detail = "the database is unavailable: nothing was stored, retry shortly"
    return JSON({"detail": detail}, status_code=503, headers=headers)


def error_page(request: Request, status_code: int, title: str, message: str) -> Response:
    context = {"user": None, "status_code": status_code, "title": title, "message": message}
    return render(request, "error.html", context, status_code=status_code)
