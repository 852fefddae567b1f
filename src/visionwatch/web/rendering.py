"""Render templates: one Jinja2 environment, number formats, and the headers every page gets."""

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from visionwatch.alert_rules import Rule
from visionwatch.store.stats import Change
from visionwatch.web.sessions import CSRF_COOKIE, new_csrf_token

TEMPLATES = Path(__file__).parent / "templates"
# Scripts only from our own files (no inline script can run, whatever a name holds);
# inline styles are allowed for the widths of bars.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data: blob:; frame-ancestors 'none'; form-action 'self'; "
        "base-uri 'none'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


def number(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def percent(value: float | None, digits: int = 1) -> str:
    return "\u2013" if value is None else f"{value * 100:.{digits}f}%"


def seconds(value: float | None) -> str:
    if value is None:
        return "\u2013"
    if value < 1:
        return f"{value * 1000:.1f} ms"
    return f"{value:.2f} s"


def duration(value: float) -> str:
    """Seconds as a person reads a silence: 45 s, 12 min, 33.7 h, 2.4 days."""
    if value < 60:
        return f"{value:.0f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    if value < 86400 * 2:
        return f"{value / 3600:.1f} h"
    return f"{value / 86400:.1f} days"


# Alert metrics as the pages name them (the API and the rules keep their identifiers).
METRIC_NAMES = {
    "avg_confidence": "Average confidence",
    "request_count": "Requests",
    "error_rate": "Error rate",
    "avg_inference_time": "Average inference time",
    "p95_inference_time": "p95 inference time",
    "class_share": "Class share",
    "device_silence": "Device silence",
    "class_drift_psi": "Class drift (PSI)",
    "class_drift_js": "Class drift (Jensen-Shannon)",
    "confidence_drift_psi": "Confidence drift (PSI)",
    "confidence_drift_js": "Confidence drift (Jensen-Shannon)",
    "precision": "Realised precision",
}


def metric_name(metric: str) -> str:
    return METRIC_NAMES.get(metric, metric)


def metric_unit(metric: str) -> str:
    """The unit an alert metric is read in: seconds, duration, percent, count or score (the
    drift scores). The page's script formats a rule's preview chart by it, as `measured`
    does on the server."""
    if metric.endswith("_inference_time"):
        return "seconds"
    if metric == "device_silence":
        return "duration"
    if metric in ("avg_confidence", "class_share", "error_rate", "precision"):
        return "percent"
    if metric == "request_count":
        return "count"
    return "score"


def measured(value: float | None, metric: str) -> str:
    """An alert metric's value in its own unit (the rule stores plain numbers)."""
    if value is None:
        return "\u2013"
    unit = metric_unit(metric)
    if unit == "seconds":
        return seconds(value)
    if unit == "duration":
        return duration(value)
    if unit == "percent":
        return percent(value)
    if unit == "count":
        return number(value)
    return f"{value:.3f}"


def threshold(rule: Rule) -> str:
    """A rule's condition and threshold as a sentence: "below 70.0%", "drops by 20%"."""
    condition = rule.condition.replace("_", " ")
    if rule.condition in ("drops_by", "rises_by"):
        return f"{condition} {rule.threshold:g}%"
    return f"{condition} {measured(rule.threshold, rule.metric)}"


def plain(value: object) -> str:
    """A metadata value as it was sent: booleans as true and false, as in JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def when(value: datetime | None) -> str:
    return "\u2013" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def when_exact(value: datetime | None) -> str:
    return "\u2013" if value is None else value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def time_element(value: datetime | None, style: str) -> Markup | str:
    """A moment as the page shows it: UTC text in a <time> element that the page's script
    rewrites in the viewer's time zone (unless they chose UTC); `style` is minute, exact or
    short, the precision it writes."""
    if value is None:
        return "\u2013"
    text = {"minute": when, "exact": when_exact, "short": short_when}[style](value)
    stamp = value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    # Built directly, not by Markup.format (which escapes through a Formatter per call): a
    # page's tables write a hundred of these. The stamp and style are ours, the text escaped.
    return Markup(f'<time datetime="{stamp}" data-style="{style}">{escape(text)}</time>')


def short_when(value: datetime) -> str:
    return value.strftime("%b %d %H:%M UTC")


def change_of(change: Change, higher_is_better: bool = True) -> dict[str, Any]:
    """The text and the colour class of a change against the previous period."""
    pct = change.change_pct
    if pct is None:
        return {"text": "no previous data", "direction": "none", "tone": "neutral"}
    direction = "up" if pct > 0 else "down" if pct < 0 else "flat"
    if direction == "flat":
        tone = "neutral"
    else:
        tone = "good" if (direction == "up") == higher_is_better else "bad"
    arrow = {"up": "▲", "down": "▼", "flat": "■"}[direction]
    return {"text": f"{arrow} {pct:+.1f}%", "direction": direction, "tone": tone, "pct": pct}


def _environment() -> Environment:
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        measured=measured,
        metric_name=metric_name,
        number=number,
        plain=plain,
        threshold=threshold,
        percent=percent,
        seconds=seconds,
        # Pages write moments as <time> elements, shown in the viewer's zone.
        when=lambda value: time_element(value, "minute"),
        when_exact=lambda value: time_element(value, "exact"),
        when_short=lambda value: time_element(value, "short"),
    )
    environment.globals.update(change_of=change_of)
    return environment


_environment_instance = _environment()


def render(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """The page `template` with `context`, the CSRF token for its forms, and safe headers."""
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
    body = _environment_instance.get_template(template).render(
        request=request, csrf_token=token, **context
    )
    response = HTMLResponse(body, status_code=status_code, headers=SECURITY_HEADERS)
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
    return response
