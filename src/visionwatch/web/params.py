"""What a page's URL asks for: its period and its inference filters. Bad values are a 400 page."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

from visionwatch.http.params import (
    METADATA_PREFIX,
    BadMetadataFilter,
    BadParameter,
    EmptyPeriod,
    parse_period,
)
from visionwatch.http.params import inference_query as read_inference_query
from visionwatch.store.inferences import InferenceQuery
from visionwatch.store.stats import Period
from visionwatch.timeutil import MINUTE, ceil_to
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


def page_period(params: QueryParams, now: datetime) -> PagePeriod:
    """A preset (`period=24h|7d|30d`) or a custom `start`/`end`; the last 7 days by default."""
    start, end = params.get("start"), params.get("end")
    if start or end:
        try:
            period = parse_period(start, end, now=now, default=PRESETS["7d"])
        except EmptyPeriod:
            raise PageError(
                400, "This period is empty", "The start must be before the end."
            ) from None
        except BadParameter as error:
            raise PageError(400, "This period cannot be read", error.message) from None
        return PagePeriod(period, None, "Custom range")
    preset = params.get("period") or DEFAULT_PRESET
    if preset not in PRESETS:
        raise PageError(400, "Unknown period", f"Choose one of {', '.join(PRESETS)}.")
    end_at = ceil_to(now, MINUTE)
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
    """The inference filters of a page's URL (the API's names, so links work in both), and
    the search form's `meta_field`/`meta_value` pair."""
    field = params.get("meta_field", "").strip()
    if field:
        pairs = [*params.multi_items(), (METADATA_PREFIX + field, params.get("meta_value", ""))]
        params = QueryParams(pairs)
    try:
        return read_inference_query(params, period, limit=limit, cursor=cursor)
    except BadMetadataFilter:
        raise PageError(400, "Bad metadata filter", "A metadata filter names a field.") from None
    except BadParameter as error:
        title = "Bad confidence filter" if "confidence" in error.parameter else "Bad filter"
        raise PageError(400, title, f"{error.parameter} {error.message}.") from None


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
