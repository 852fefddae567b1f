"""Errors of pages: shown as a page that says what went wrong, never as JSON."""

from starlette.requests import Request


class PageError(Exception):
    def __init__(self, status_code: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.title = title
        self.message = message


class LoginRequired(Exception):
    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


API_PREFIXES = ("/api/", "/inference-stats", "/metrics", "/healthz", "/readyz", "/openapi.json")


def wants_page(request: Request) -> bool:
    """A browser asking for a page (not a program calling the API)."""
    if request.url.path.startswith(API_PREFIXES) or request.url.path.endswith("/inference-stats"):
        return False
    return "text/html" in request.headers.get("accept", "")
