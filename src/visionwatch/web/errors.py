"""Errors of pages: shown as a page that says what went wrong, never as JSON."""

from pydantic import ValidationError
from starlette.requests import Request

from visionwatch.items import field_errors


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


def form_errors(error: ValidationError) -> list[str]:
    """A form's validation errors as lines to show: the field, then what is wrong."""
    return [f"{e.path or 'rule'}: {e.message}" for e in field_errors(error)]
