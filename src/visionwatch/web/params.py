"""What a page's URL asks for: its period and its inference filters. Bad values are a 400 page."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from visionwatch.api.inferences import METADATA_PREFIX, BadMetadataFilter
from visionwatch.api.inferences import metadata_filters as api_metadata_filters
from visionwatch.store.inferences import InferenceQuery
from visionwatch.store.stats import Period
from visionwatch.timeutil import MINUTE, ceil_to, floor_to, parse_time, utcnow
from visionwatch.web.errors import PageError

PRESETS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
PRESET_NAMES = {"24h": "Last 24 hours", "7d": "Last 7 days", "30d": "Last 30 days"}
DEFAULT_PRESET = "7d"


@dataclass(frozen=True, slots=True)
class PagePeriod:
    period: Period
    preset: str | None  # "24h", "7d", "30d", or None for a custom range
    label: str

    @property
    def previous_label(self) -> str:
        before = self.period.previous()
        return f"{_short(before.start)} \u2013 {_short(before.end)}"

    @property
    def current_label(self) -> str:
        return f"{_short(self.period.start)} \u2013 {_short(self.period.end)}"

    def params(self) -> dict[str, str]:
        """Query parameters that give this period again."""
        if self.preset is not None:
            return {"period": self.preset}
        return {"start": _iso(self.period.start), "end": _iso(self.period.end)}


def _short(moment: datetime) -> str:
    return moment.strftime("%b %d %H:%M UTC")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def page_period(params: QueryParams, now: datetime | None = None) -> PagePeriod:
    """A preset (`period=24h|7d|30d`) or a custom `start`/`end`; the last 7 days by default."""
    start, end = params.get("start"), params.get("end")
    if start or end:
        try:
            end_at = ceil_to(parse_time(end) if end else now or utcnow(), MINUTE)
            start_at = floor_to(parse_time(start), MINUTE) if start else end_at - PRESETS["7d"]
        except ValueError as error:
            raise PageError(400, "This period cannot be read", str(error)) from None
        if start_at >= end_at:
            raise PageError(400, "This period is empty", "The start must be before the end.")
        return PagePeriod(Period(start_at, end_at), None, "Custom range")
    preset = params.get("period") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise PageError(400, "Unknown period", f"Choose one of {', '.join(PRESETS)}.")
    end_at = ceil_to(now or utcnow(), MINUTE)
    return PagePeriod(Period(end_at - PRESETS[preset], end_at), preset, PRESET_NAMES[preset])


def chart_interval(period: Period) -> str:
    """The bucket of a period's charts: about 20 to 800 points."""
    span = period.end - period.start
    if span <= timedelta(hours=6):
        return "minute"
    if span <= timedelta(days=31):
        return "hour"
    return "day"


def inference_query(
    params: QueryParams, period: Period, limit: int = 50, cursor: str | None = None
) -> InferenceQuery:
    """The inference filters of a page's URL (the API's names, so links work in both)."""
    metadata = metadata_filters(params)
    return InferenceQuery(
        period=period,
        model=params.get("model_id") or None,
        device=params.get("device_id") or None,
        class_name=params.get("class") or None,
        min_confidence=_confidence(params, "min_confidence"),
        max_confidence=_confidence(params, "max_confidence"),
        has_image=_flag(params, "has_image"),
        metadata=metadata,
        limit=limit,
        cursor=cursor if cursor is not None else params.get("cursor") or None,
    )


def metadata_filters(params: QueryParams) -> dict[str, str]:
    """`metadata.<field>=<value>` parameters, and the form's `meta_field`/`meta_value` pair."""
    pairs = params.multi_items()
    field = params.get("meta_field", "").strip()
    if field:
        pairs.append((METADATA_PREFIX + field, params.get("meta_value", "")))
    try:
        return api_metadata_filters(pairs)
    except BadMetadataFilter:
        raise PageError(400, "Bad metadata filter", "A metadata filter names a field.") from None


def filter_params(query: InferenceQuery) -> dict[str, str]:
    """The URL parameters of a query's filters (no period, no cursor)."""
    values = {
        "model_id": query.model,
        "device_id": query.device,
        "class": query.class_name,
        "min_confidence": None if query.min_confidence is None else str(query.min_confidence),
        "max_confidence": None if query.max_confidence is None else str(query.max_confidence),
        "has_image": None if query.has_image is None else str(query.has_image).lower(),
    }
    result = {name: value for name, value in values.items() if value is not None}
    for field, value in sorted(query.metadata.items()):
        result[METADATA_PREFIX + field] = value
    return result


def url_with(path: str, *parts: dict[str, str]) -> str:
    merged: dict[str, str] = {}
    for part in parts:
        merged.update(part)
    return f"{path}?{urlencode(merged)}" if merged else path


def _confidence(params: QueryParams, name: str) -> float | None:
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise PageError(400, "Bad confidence filter", f"{name} must be a number.") from None
    if not 0 <= value <= 1:
        raise PageError(400, "Bad confidence filter", f"{name} lies between 0 and 1.")
    return value


def _flag(params: QueryParams, name: str) -> bool | None:
    raw = params.get(name, "").strip().lower()
    if raw in ("", "any"):
        return None
    if raw in ("true", "yes", "1"):
        return True
    if raw in ("false", "no", "0"):
        return False
    raise PageError(400, "Bad filter", f"{name} is true, false or any.")
