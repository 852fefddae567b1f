"""Shared dependencies: the database, settings, the caller's key, the period and filters."""

from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request
from starlette.concurrency import run_in_threadpool

from visionwatch.api.errors import InvalidParams
from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.http.params import BadParameter, parse_period
from visionwatch.ratelimit import RateLimiter
from visionwatch.store import accounts
from visionwatch.store.accounts import ApiKey
from visionwatch.store.stats import Filters, Period

DEFAULT_PERIOD = timedelta(days=7)


def _presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.query_params.get("api_key") or None


async def authenticate(request: Request, database: DatabaseDep) -> ApiKey:
    """The caller's live key: `Authorization: Bearer <key>` or `?api_key=<key>`."""
    presented = _presented_key(request)
    if presented is None:
        raise HTTPException(
            401,
            "an API key is required: send `Authorization: Bearer <key>` or `?api_key=<key>`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = await run_in_threadpool(accounts.authenticate_key, database, presented)
    if key is None:
        raise HTTPException(
            401, "this API key is not valid or was revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    check_rate(request, key)
    return key


def check_rate(request: Request, key: ApiKey) -> None:
    """429 with Retry-After when the key has spent its burst (settings.rate_limit_*)."""
    limiter: RateLimiter | None = request.app.state.rate_limiter
    if limiter is None:
        return
    wait = limiter.take(key.id)
    if wait:
        raise HTTPException(
            429,
            f"this API key made more than {limiter.per_second:g} requests a second: "
            f"retry in {wait} s",
            headers={"Retry-After": str(wait)},
        )


def require(*scopes: str) -> Callable[..., ApiKey]:
    """A key with any of `scopes` (admin has them all)."""

    def check(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
        if not key.scopes & {*scopes, "admin"}:
            wanted = " or ".join(repr(scope) for scope in scopes)
            raise HTTPException(403, f"this API key lacks the {wanted} scope")
        return key

    return check


IngestKey = Annotated[ApiKey, Depends(require("ingest"))]
ReadKey = Annotated[ApiKey, Depends(require("read"))]
AdminKey = Annotated[ApiKey, Depends(require("admin"))]
# What senders need to read: their capture rules.
SenderKey = Annotated[ApiKey, Depends(require("ingest", "read"))]


def period(
    request: Request,
    start: Annotated[str | None, Query(description="ISO 8601 or Unix seconds")] = None,
    end: Annotated[str | None, Query(description="ISO 8601 or Unix seconds; default now")] = None,
) -> Period:
    """[start, end) widened to whole minutes, the rollups' grain. Default: the last 7 days."""
    try:
        return parse_period(start, end, now=clock_of(request), default=DEFAULT_PERIOD)
    except BadParameter as error:
        raise InvalidParams.one(error.parameter, error.message) from None


def filters(
    model_id: Annotated[str | None, Query(max_length=256)] = None,
    device_id: Annotated[str | None, Query(max_length=256)] = None,
) -> Filters:
    return Filters(model=model_id, device=device_id)


PeriodDep = Annotated[Period, Depends(period)]
FiltersDep = Annotated[Filters, Depends(filters)]
