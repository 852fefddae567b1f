"""Capture rules ("active learning"): which inference images are worth keeping. Pure.

Images are off by default. A rule keeps an image when any of its reasons
holds: a random draw under `sample_rate`, a prediction whose confidence lies in
[`confidence_min`, `confidence_max`] (the uncertain ones), a predicted class in
`classes`, or every `metadata` field equal to the inference's. `daily_cap`
bounds the images kept per model and UTC day. A model's own rule replaces the
workspace's. The SDK and the server share this module; the SDK imports it, so
it needs nothing but the standard library.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

WORKSPACE = ""  # the rule's model for a rule of every model


@dataclass(frozen=True, slots=True)
class CaptureRule:
    model: str = WORKSPACE
    sample_rate: float | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    classes: frozenset[str] = frozenset()
    metadata: Mapping[str, str | int | float | bool] = field(default_factory=dict)
    daily_cap: int | None = None
    enabled: bool = True

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model or None,
            "sample_rate": self.sample_rate,
            "confidence_min": self.confidence_min,
            "confidence_max": self.confidence_max,
            "classes": sorted(self.classes),
            "metadata": dict(self.metadata),
            "daily_cap": self.daily_cap,
            "enabled": self.enabled,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CaptureRule":
        """A rule from its JSON form (as `as_dict` writes it and the API serves it)."""
        return cls(
            model=data.get("model_id") or WORKSPACE,
            sample_rate=data.get("sample_rate"),
            confidence_min=data.get("confidence_min"),
            confidence_max=data.get("confidence_max"),
            classes=frozenset(data.get("classes") or ()),
            metadata=dict(data.get("metadata") or {}),
            daily_cap=data.get("daily_cap"),
            enabled=bool(data.get("enabled", True)),
        )


def effective_rule(rules: Iterable[CaptureRule], model: str) -> CaptureRule | None:
    """The model's own rule if it has one, else the workspace's; None if neither."""
    by_model = {rule.model: rule for rule in rules}
    return by_model.get(model) or by_model.get(WORKSPACE)


def keep_reason(
    rule: CaptureRule | None,
    predictions: Iterable[tuple[str, float]],
    metadata: Mapping[str, Any],
    draw: float,
) -> str | None:
    """Why the rule keeps this image ("sample", "confidence", "class", "metadata"), or None.

    `predictions` are (class, confidence) pairs; `draw` is uniform in [0, 1).
    """
    if rule is None or not rule.enabled:
        return None
    if rule.sample_rate is not None and draw < rule.sample_rate:
        return "sample"
    banded = rule.confidence_min is not None or rule.confidence_max is not None
    low = 0.0 if rule.confidence_min is None else rule.confidence_min
    high = 1.0 if rule.confidence_max is None else rule.confidence_max
    for name, confidence in predictions:
        if banded and low <= confidence <= high:
            return "confidence"
        if name in rule.classes:
            return "class"
    if rule.metadata and all(
        name in metadata and _same(metadata[name], value) for name, value in rule.metadata.items()
    ):
        return "metadata"
    return None


def _same(sent: Any, wanted: Any) -> bool:
    # True is not 1 here: metadata values keep their JSON types.
    return type(sent) is type(wanted) and bool(sent == wanted)
