"""Query parameters the API and the pages read alike: a period, and metadata filters."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from starlette.datastructures import QueryParams

from visionwatch.items import MAX_FIELD_NAME, MAX_FIELD_VALUE
from visionwatch.store.compare import Side
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


def compare_sides(
    *,
    a_model: str | None,
    b_model: str | None,
    device: str | None,
    b_period: Period,
    a_start: str | None,
    a_end: str | None,
    now: datetime,
) -> tuple[Side, Side]:
    """The two sides of a comparison (the API's and the page's parameters alike).

    B is `b_model_id` (default: A's model) over the period. A is `a_model_id` over
    `a_start`/`a_end`; without them, over B's period when the models differ (two versions
    side by side) and over the period just before when they are one model (before and
    after). Given one end of A's period, the other is B's period's length away.
    """
    if not a_model:
        raise BadParameter("a_model_id", "names the model of side A")
    b_model = b_model or a_model
    length = b_period.end - b_period.start
    if a_start and not a_end:
        try:
            start_at = floor_to(parse_time(a_start), MINUTE)
        except ValueError as error:
            raise BadParameter("a_start", str(error)) from None
        a_period = Period(start_at, start_at + length)
    elif a_start or a_end:
        try:
            a_period = parse_period(a_start, a_end, now=now, default=length)
        except BadParameter as error:
            raise BadParameter(f"a_{error.parameter}", error.message) from None
    else:
        a_period = b_period if a_model != b_model else b_period.previous()
    return Side(a_model, a_period, device), Side(b_model, b_period, device)
