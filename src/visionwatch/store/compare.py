"""Two sides, side by side: two versions of a project, or two periods of one model.

"Is the new version better?" is asked at every deploy. Each side is a model (optionally on
one device) over a period; its numbers come from the rollups and the operators' verdicts,
like every dashboard figure, and the drift scores read side B against side A, its baseline.
"""

from dataclasses import dataclass

from sqlalchemy import select

from visionwatch.db.engine import Database
from visionwatch.db.schema import models
from visionwatch.drift import coarse_confidence, js_distance, psi
from visionwatch.histograms import CONFIDENCE_BINS
from visionwatch.store import feedback as feedback_store
from visionwatch.store import stats as stats_store
from visionwatch.store.stats import Filters, Period
from visionwatch.verdicts import Verdicts

# The confidence distribution is shown as 20 bars of 0.05 (five rollup bins each).
CONFIDENCE_BARS = 20


@dataclass(frozen=True, slots=True)
class Side:
    model: str
    period: Period
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Summary:
    side: Side
    requests: int
    errors: int
    avg_confidence: float | None
    median_confidence: float | None
    avg_inference_time: float | None
    inference_time_p50: float | None
    inference_time_p95: float | None
    inference_time_p99: float | None
    confidence: list[int]  # predictions per bar of 1 / CONFIDENCE_BARS, lowest first
    coarse_confidence: dict[int, int]  # predictions per drift bin, as the drift reads them
    classes: dict[str, int]  # predictions per class
    verdicts: Verdicts

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def predictions(self) -> int:
        return sum(self.classes.values())

    @property
    def precision(self) -> float | None:
        return self.verdicts.precision


@dataclass(frozen=True, slots=True)
class ClassRow:
    name: str
    a_count: int
    b_count: int
    a_share: float
    b_share: float


@dataclass(frozen=True, slots=True)
class Comparison:
    a: Summary
    b: Summary
    class_psi: float | None
    class_js: float | None
    confidence_psi: float | None
    confidence_js: float | None
    classes: list[ClassRow]  # both sides' classes, by their larger share


class UnknownModel(LookupError):
    def __init__(self, side: str, model: str) -> None:
        super().__init__(model)
        self.side = side
        self.model = model


def summarise(db: Database, workspace_id: int, side: Side) -> Summary:
    filters = Filters(model=side.model, device=side.device)
    found = stats_store.stats(db, workspace_id, filters, side.period)
    classes = stats_store.class_stats(db, workspace_id, filters, side.period)
    verdicts = feedback_store.precision(db, workspace_id, filters, side.period)
    confidence = found.distributions.confidence
    return Summary(
        side=side,
        requests=int(found.total_requests.current or 0),
        errors=int(found.errors.current or 0),
        avg_confidence=found.avg_confidence.current,
        median_confidence=found.median_confidence,
        avg_inference_time=found.avg_inference_time.current,
        inference_time_p50=found.inference_time_p50,
        inference_time_p95=found.inference_time_p95,
        inference_time_p99=found.inference_time_p99,
        confidence=confidence_bars(confidence, CONFIDENCE_BARS),
        coarse_confidence=coarse_confidence(confidence),
        classes={c.name: c.count for c in classes},
        verdicts=verdicts.get(None, Verdicts()),
    )


def compare(db: Database, workspace_id: int, a: Side, b: Side) -> Comparison:
    """Side B against side A; UnknownModel names the side whose model this workspace lacks."""
    for name, side in (("a", a), ("b", b)):
        if stats_store.find_model(db, workspace_id, side.model) is None:
            raise UnknownModel(name, side.model)
    first, second = summarise(db, workspace_id, a), summarise(db, workspace_id, b)
    return Comparison(
        a=first,
        b=second,
        class_psi=psi(second.classes, first.classes),
        class_js=js_distance(second.classes, first.classes),
        confidence_psi=psi(second.coarse_confidence, first.coarse_confidence),
        confidence_js=js_distance(second.coarse_confidence, first.coarse_confidence),
        classes=class_rows(first.classes, second.classes),
    )


def class_rows(a: dict[str, int], b: dict[str, int]) -> list[ClassRow]:
    total_a, total_b = sum(a.values()), sum(b.values())
    rows = [
        ClassRow(
            name,
            a.get(name, 0),
            b.get(name, 0),
            a.get(name, 0) / total_a if total_a else 0.0,
            b.get(name, 0) / total_b if total_b else 0.0,
        )
        for name in set(a) | set(b)
    ]
    rows.sort(key=lambda row: (-max(row.a_share, row.b_share), row.name))
    return rows


def confidence_bars(bins: dict[int, int], bars: int) -> list[int]:
    """Counts per bar of 1/`bars` confidence, from the rollups' bins of 0.01."""
    width = CONFIDENCE_BINS // bars
    return [
        sum(bins.get(index, 0) for index in range(bar * width, (bar + 1) * width))
        for bar in range(bars)
    ]


def model_names(db: Database, workspace_id: int) -> list[str]:
    """Every model of the workspace by name: what either side can be."""
    with db.read_lagging() as conn:
        return list(
            conn.execute(
                select(models.c.name)
                .where(models.c.workspace_id == workspace_id)
                .order_by(models.c.name)
            ).scalars()
        )


def previous_version(db: Database, workspace_id: int, model: str) -> str | None:
    """The version of the model's project first seen just before it (the deploy it replaced),
    or None for a project's first version or a model without a project."""
    with db.read_lagging() as conn:
        found = conn.execute(
            select(models.c.project, models.c.first_seen).where(
                models.c.workspace_id == workspace_id, models.c.name == model
            )
        ).one_or_none()
        if found is None or found.project is None:
            return None
        return conn.execute(
            select(models.c.name)
            .where(
                models.c.workspace_id == workspace_id,
                models.c.project == found.project,
                models.c.first_seen < found.first_seen,
            )
            .order_by(models.c.first_seen.desc(), models.c.name.desc())
            .limit(1)
        ).scalar_one_or_none()
