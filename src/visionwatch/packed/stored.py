"""An Inference in its stored form, and back (docs/architecture.md, "The stored form")."""

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from visionwatch.items import Inference, MetadataValue, Prediction, encode_metadata_value
from visionwatch.packed.body import Body, Score, pack_body
from visionwatch.packed.ids import encode_id
from visionwatch.packed.remainder import (
    LAYOUT_SHIFT,
    VERBATIM,
    Named,
    diff,
    native_form,
    pack_patch,
    render,
    server_form,
    to_stated_precision,
)
from visionwatch.packed.tags import value_tag

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

Label = tuple[str, int | None]  # a class name and its class id


@dataclass(frozen=True, slots=True)
class Split:
    """An item already split from its facts (an Inference Server's result, whose parsed
    JSON is freed as soon as it is translated): its form and remainder."""

    form: int
    remainder: bytes | None


@dataclass(frozen=True, slots=True)
class Packed:
    """An inference as its row stores it, but for what the ingest statement adds from the
    workspace's dictionaries: the ids of `labels` and `fields`, which the body names by
    position."""

    inference_id: bytes
    body: bytes
    labels: list[Label]
    fields: list[str]
    values: str  # the tags of its metadata values


def pack_inference(inference: Inference, received_at: datetime) -> Packed:
    body, labels, fields = facts_of(inference, received_at)
    item = inference.item
    if isinstance(item, Split):
        body = replace(body, form=item.form, remainder=item.remainder)
    else:
        form = native_form(item) if isinstance(item, dict) else VERBATIM << LAYOUT_SHIFT
        body = _with_remainder(inference, body, labels, fields, item, form)
    values = {
        value_tag(name, encode_metadata_value(value)[0])
        for name, value in inference.metadata.items()
    }
    return Packed(
        inference_id=encode_id(inference.inference_id),
        body=pack_body(body),
        labels=labels,
        fields=fields,
        values="".join(sorted(values)),
    )


def split_server_result(inference: Inference, raw: dict[str, Any]) -> Split:
    """An Inference Server's result, split from the facts of its inference."""
    body, labels, fields = facts_of(inference, inference.timestamp)
    found = _with_remainder(inference, body, labels, fields, raw, server_form(raw))
    return Split(found.form, found.remainder)


def facts_of(inference: Inference, received_at: datetime) -> tuple[Body, list[Label], list[str]]:
    """The body of an inference (without its item's form and remainder), and the labels and
    metadata fields it names by position."""
    positions: dict[Label, int] = {}

    def score(p: Prediction) -> Score:
        label = positions.setdefault((p.class_name, p.class_id), len(positions))
        return Score(label, p.confidence, p.x, p.y, p.width, p.height, p.points, p.keypoints)

    listed = inference.scores
    chosen = None
    top = None
    as_dict = False
    if listed is None:
        scores = [score(p) for p in inference.predictions]
    else:
        scores = [score(p) for p in listed.listed]
        chosen, as_dict = listed.chosen, listed.as_dict
        wanted = listed.top
        if wanted is not None and not (len(chosen) == 1 and _is(listed.listed[chosen[0]], wanted)):
            top = Score(
                positions.setdefault((wanted.class_name, wanted.class_id), len(positions)),
                wanted.confidence,
            )
    fields = list(inference.metadata)
    metadata: list[tuple[int, MetadataValue]] = [
        (position, inference.metadata[name]) for position, name in enumerate(fields)
    ]
    body = Body(
        received_lag=(received_at - inference.timestamp) // MICROSECOND,
        inference_time=inference.inference_time,
        task=inference.task,
        image_width=inference.image_width,
        image_height=inference.image_height,
        error=inference.error,
        scores=scores,
        as_dict=as_dict,
        chosen=chosen,
        top=top,
        metadata=metadata,
        labels=len(positions),
        fields=len(fields),
    )
    return body, list(positions), fields


def _is(listed: Prediction, top: Prediction) -> bool:
    """Whether a listed score is the top class as the inference predicts it."""
    return (listed.class_name, listed.class_id, listed.confidence) == (
        top.class_name,
        top.class_id,
        top.confidence,
    )


def _with_remainder(
    inference: Inference,
    body: Body,
    labels: list[Label],
    fields: list[str],
    raw: Any,
    form: int,
) -> Body:
    body = replace(body, form=form)
    named = Named(
        inference.inference_id,
        inference.model,
        inference.device,
        inference.timestamp,
        body,
        labels,
        fields,
    )
    rendered = render(named)
    return replace(body, remainder=pack_patch(diff(to_stated_precision(raw, rendered), rendered)))
