"""Alert rules and their state machine: what a measurement means for a rule's state. Pure.

States: ok -> pending -> firing -> resolved, and no_data. A rule notifies when
it starts firing, again every `repeat_seconds` while it fires, and when it
resolves. Time always comes from the caller (an injectable clock).
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, get_args

Metric = Literal[
    "avg_confidence",
    "request_count",
    "error_rate",
    "avg_inference_time",
    "p95_inference_time",
    "class_share",
    "device_silence",
    "class_drift_psi",
    "class_drift_js",
    "confidence_drift_psi",
    "confidence_drift_js",
    # correct / (correct + incorrect) of operators' verdicts; samples: those verdicts
    "precision",
]
Condition = Literal["above", "below", "drops_by", "rises_by"]
State = Literal["ok", "pending", "firing", "resolved", "no_data"]
METRICS: tuple[str, ...] = get_args(Metric)
CONDITIONS: tuple[str, ...] = get_args(Condition)
DRIFT = {"class_drift_psi", "class_drift_js", "confidence_drift_psi", "confidence_drift_js"}
RELATIVE = {"drops_by", "rises_by"}


@dataclass(frozen=True, slots=True)
class Webhook:
    url: str
    kind: Literal["json", "slack"] = "json"


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: str
    condition: str
    threshold: float  # a value; a percent for drops_by and rises_by; seconds for silence
    model: str | None = None  # one version, e.g. "vehicles/3"
    project: str | None = None  # every version of a project, e.g. "vehicles"
    class_name: str | None = None
    device: str | None = None
    window_seconds: int = 1800
    baseline_seconds: int = 86400  # the window before it, for relative change and drift
    min_samples: int = 10
    pending_seconds: int = 0
    repeat_seconds: int = 3600
    max_per_hour: int = 5
    max_per_day: int = 20
    recipients: tuple[str, ...] = ()
    webhooks: tuple[Webhook, ...] = ()

    @property
    def uses_baseline(self) -> bool:
        return self.condition in RELATIVE or self.metric in DRIFT

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "metric": self.metric,
            "condition": self.condition,
            "threshold": self.threshold,
            "model_id": self.model,
            "project": self.project,
            "class": self.class_name,
            "device_id": self.device,
            "window_seconds": self.window_seconds,
            "baseline_seconds": self.baseline_seconds,
            "min_samples": self.min_samples,
            "pending_seconds": self.pending_seconds,
            "repeat_seconds": self.repeat_seconds,
            "max_per_hour": self.max_per_hour,
            "max_per_day": self.max_per_day,
            "recipients": list(self.recipients),
            "webhooks": [{"url": w.url, "kind": w.kind} for w in self.webhooks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Rule":
        return cls(
            name=data["name"],
            metric=data["metric"],
            condition=data["condition"],
            threshold=float(data["threshold"]),
            model=data.get("model_id"),
            project=data.get("project"),
            class_name=data.get("class"),
            device=data.get("device_id"),
            window_seconds=int(data.get("window_seconds", 1800)),
            baseline_seconds=int(data.get("baseline_seconds", 86400)),
            min_samples=int(data.get("min_samples", 10)),
            pending_seconds=int(data.get("pending_seconds", 0)),
            repeat_seconds=int(data.get("repeat_seconds", 3600)),
            max_per_hour=int(data.get("max_per_hour", 5)),
            max_per_day=int(data.get("max_per_day", 20)),
            recipients=tuple(data.get("recipients") or ()),
            webhooks=tuple(
                Webhook(w["url"], w.get("kind", "json")) for w in data.get("webhooks") or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Measurement:
    """The metric over the window (None: too few samples), and what it was compared with."""

    value: float | None
    samples: int
    baseline: float | None = None  # the baseline's value, for relative conditions
    compared: float | None = None  # what met the threshold: the value, or its change in %


@dataclass(frozen=True, slots=True)
class RuleState:
    state: State = "ok"
    since: datetime | None = None  # when it entered this state
    pending_since: datetime | None = None
    last_notified: datetime | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    state: RuleState
    changed: bool  # a new state, to keep in the history
    notify: Literal["firing", "repeat", "resolved"] | None = None
    breached: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def compared_value(rule: Rule, value: float | None, baseline: float | None) -> float | None:
    """What the threshold is compared with: the value, or its change in percent."""
    if value is None:
        return None
    if rule.condition in RELATIVE:
        if baseline is None or baseline == 0:
            return None
        change = 100.0 * (value - baseline) / abs(baseline)
        return -change if rule.condition == "drops_by" else change
    return value


def breaches(rule: Rule, compared: float) -> bool:
    if rule.condition == "below":
        return compared < rule.threshold
    # above, and drops_by / rises_by (the change in the named direction, in percent)
    return compared > rule.threshold if rule.condition == "above" else compared >= rule.threshold


def step(rule: Rule, current: RuleState, measured: Measurement, now: datetime) -> Outcome:
    """The rule's next state after a measurement at `now`, and what to notify."""
    if measured.compared is None:
        if current.state == "no_data":
            return Outcome(current, changed=False)
        return Outcome(RuleState("no_data", now, None, current.last_notified), changed=True)
    breach = breaches(rule, measured.compared)
    state = current.state
    if breach:
        if state == "firing":
            repeat = timedelta(seconds=rule.repeat_seconds)
            if rule.repeat_seconds and (
                current.last_notified is None or now - current.last_notified >= repeat
            ):
                updated = RuleState("firing", current.since, None, now)
                return Outcome(updated, changed=False, notify="repeat", breached=True)
            return Outcome(current, changed=False, breached=True)
        pending_since = current.pending_since if state == "pending" else now
        assert pending_since is not None
        if now - pending_since >= timedelta(seconds=rule.pending_seconds):
            firing = RuleState("firing", now, None, now)
            return Outcome(firing, changed=True, notify="firing", breached=True)
        if state == "pending":
            return Outcome(current, changed=False, breached=True)
        pending = RuleState("pending", now, now, current.last_notified)
        return Outcome(pending, changed=True, breached=True)
    if state == "firing":
        resolved = RuleState("resolved", now, None, now)
        return Outcome(resolved, changed=True, notify="resolved")
    if state in ("pending", "no_data"):
        return Outcome(RuleState("ok", now, None, current.last_notified), changed=True)
    return Outcome(current, changed=False)
