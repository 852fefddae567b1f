"""Query parameters the API and the pages read alike: a period, and metadata filters."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from starlette.datastructures import QueryParams

from visionwatch.items import MAX_FIELD_NAME, MAX_FIELD_VALUE
from visionwatch.store.inferences import InferenceQuery
from visionwatch.store.stats import Period
from visionwatch.timeutil import MINUTE, ceil_to, floor_to, parse_time

METADATA_PREFIX = "metadata."


class BadParameter(ValueError):
    """A query parameter that cannot be read; each caller answers it in its own dialect (a
    422 naming the field, Roboflow's 400, an error page)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


class EmptyPeriod(BadParameter):
    def __init__(self) -> None:
        super().__init__("start", "must be before end")


class BadMetadataFilter(BadParameter):
    def __init__(self, parameter: str) -> None:
        super().__init__(parameter, "metadata filters name a field and its value")


def parse_period(
    start: str | None, end: str | None, *, now: datetime, default: timedelta
) -> Period:
    """[start, end) from ISO 8601 or Unix seconds, widened to whole minutes (the rollups'
    grain); `end` defaults to now and `start` to `default` before the end."""
    try:
        end_at = ceil_to(parse_time(end) if end else now, MINUTE)
    except ValueError as error:
        raise BadParameter("end", str(error)) from None
    try:
        start_at = floor_to(parse_time(start), MINUTE) if start else end_at - default
    except ValueError as error:
        raise BadParameter("start", str(error)) from None
    if start_at >= end_at:
        raise EmptyPeriod
    return Period(start_at, end_at)


def metadata_filters(params: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Field -> value of the `metadata.<field>=<value>` parameters (the API's and the pages')."""
    found = {}
    for name, value in params:
        if name.startswith(METADATA_PREFIX):
            field = name.removeprefix(METADATA_PREFIX)
            if not 1 <= len(field) <= MAX_FIELD_NAME or len(value) > MAX_FIELD_VALUE:
                raise BadMetadataFilter(name)
            found[field] = value
    return found


def inference_query(
    params: QueryParams, period: Period, *, limit: int = 50, cursor: str | None = None
) -> InferenceQuery:
    """The inference filters of a URL, by the API's parameter names: the pages use the same,
    so a page's link and an API call filter alike."""
    return InferenceQuery(
        period=period,
        model=params.get("model_id") or None,
        device=params.get("device_id") or None,
        class_name=params.get("class") or None,
        min_confidence=_confidence(params, "min_confidence"),
        max_confidence=_confidence(params, "max_confidence"),
        has_image=_flag(params, "has_image"),
        metadata=metadata_filters(params.multi_items()),
        limit=limit,
        cursor=cursor if cursor is not None else params.get("cursor") or None,
    )


def _confidence(params: QueryParams, name: str) -> float | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise BadParameter(name, "must be a number") from None
    if not 0 <= value <= 1:
        raise BadParameter(name, "lies between 0 and 1")
    return value


def _flag(params: QueryParams, name: str) -> bool | None:
    raw = params.get(name, "").strip().lower()
    if raw in ("", "any"):
        return None
    if raw in ("true", "yes", "on", "1"):
        return True
    if raw in ("false", "no", "off", "0"):
        return False
    raise BadParameter(name, "is true, false or any")
