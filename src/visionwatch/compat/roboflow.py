"""Roboflow payloads -> visionwatch inferences. Pure.

Two reports reach `/inference-stats`: the Inference Server's periodic one
(each result holds the request and the response, condensed to class and
confidence by default) and the workflow aggregator's flat one (one row per
prediction). Both become ordinary Inferences, validated with the same rules
as the native API; errors name their path in the report as sent.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from visionwatch.items import (
    DEFAULT_LIMITS,
    ClassName,
    DeviceName,
    Inference,
    InferenceId,
    InvalidBatch,
    ItemError,
    ItemLimits,
    ModelName,
    NoNul,
    field_errors,
    parse_item,
)
from visionwatch.packed.stored import split_server_result
from visionwatch.timeutil import parse_time

SYSTEM_INFO = (
    "platform",
    "platform_release",
    "platform_version",
    "architecture",
    "hostname",
    "ip_address",
    "mac_address",
    "processor",
)
TASKS = {
    "object-detection",
    "instance-segmentation",
    "keypoint-detection",
    "classification",
    "multi-label-classification",
}
# Response keys that carry what the model predicted; the rest is kept as sent only.
RESPONSE_KEYS = ("predictions", "top", "confidence", "predicted_classes", "time", "image")

Label = Annotated[str, Field(max_length=256), NoNul]
MAX_REPORT_RESULTS = 200_000
ModelT = TypeVar("ModelT", bound=BaseModel)


class _Lenient(BaseModel):
    # Types are checked strictly; keys we do not know are ignored, never an error.
    model_config = ConfigDict(strict=True, extra="ignore")


class ReportIn(_Lenient):
    api_key: Label | None = None
    timestamp: Any = None  # checked by _report_time: the server's copy is stale anyway
    source: Label | None = None
    device_id: DeviceName | None = None
    inference_server_id: DeviceName | None = None
    inference_server_version: Label | None = None
    tags: list[Label] | None = Field(default=None, max_length=64)
    platform: Label | None = None
    platform_release: Label | None = None
    platform_version: Label | None = None
    architecture: Label | None = None
    hostname: Label | None = None
    ip_address: Label | None = None
    mac_address: Label | None = None
    processor: Label | None = None
    # A minute of a busy server's results (its report is never split), bounded by the
    # report's body limit long before this.
    inference_results: list[dict[str, Any]] = Field(max_length=MAX_REPORT_RESULTS)


class ServerRequestIn(_Lenient):
    model_id: ModelName
    model_type: Label | None = None
    api_key: Label | None = None
    id: InferenceId | None = None


def _check_response(value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, list) and all(isinstance(part, dict) for part in value):
        return value
    raise ValueError("expected a response object or a list of them")


class ServerInferenceIn(_Lenient):
    inference_id: InferenceId | None = None
    inference_server_id: DeviceName | None = None
    inference_server_version: Label | None = None
    request: ServerRequestIn
    response: Annotated[Any, AfterValidator(_check_response)] = None


class ServerResultIn(_Lenient):
    request_time: float
    inference: ServerInferenceIn


class WorkflowResultIn(_Lenient):
    model_id: ModelName
    class_name: ClassName | None = None
    confidence: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    inference_id: InferenceId | None = None
    model_type: Label | None = None


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sent the report: the device it heartbeats for, and what it said of itself."""

    device: str
    version: str | None
    hostname: str | None
    tags: list[str]
    info: dict[str, str]


@dataclass(frozen=True, slots=True)
class Report:
    sender: Sender | None
    inferences: list[Inference]


def api_key_of(body: Any) -> str | None:
    """The report's key: top-level, else the first request's (servers fall back to it)."""
    if not isinstance(body, dict):
        return None
    key = body.get("api_key")
    if isinstance(key, str) and key:
        return key
    results = body.get("inference_results")
    return _first_request_key(results) if isinstance(results, list) else None


def parse_report(
    body: Any, *, now: datetime, max_clock_skew: timedelta, limits: ItemLimits = DEFAULT_LIMITS
) -> Report:
    """Validate a report and translate it, or raise InvalidBatch naming each bad path.

    The results of `body` are used up: each is released once translated, so that a busy
    server's minute (18,000 results) is not held twice, as parsed JSON and as inferences.
    """
    if not isinstance(body, dict):
        raise InvalidBatch([ItemError(None, "", "expected a JSON object")])
    try:
        report = ReportIn.model_validate(body)
    except ValidationError as error:
        raise InvalidBatch(field_errors(error)) from None
    workflow = report.source == "workflow"
    sender = _sender(report, workflow)
    default_device = sender.device if sender else None
    inferences: list[Inference] = []
    errors: list[ItemError] = []
    workflow_rows: list[tuple[int, WorkflowResultIn]] = []
    results, stamp = report.inference_results, report.timestamp
    del report
    sent = body["inference_results"]
    for index, result in enumerate(results):
        results[index] = sent[index] = {}  # freed once translated (this loop holds it)
        prefix = f"inference_results[{index}]"
        try:
            if "inference" in result:
                inferences.append(
                    _server_result(result, default_device, now, max_clock_skew, prefix, limits)
                )
            else:
                workflow_rows.append((index, _validated(WorkflowResultIn, result, prefix)))
        except InvalidBatch as invalid:
            errors.extend(invalid.errors)
    try:
        moment = _report_time(stamp, now)
    except ValueError as error:
        errors.append(ItemError(None, "timestamp", str(error)))
    if workflow_rows and not errors:
        inferences += _workflow_inferences(workflow_rows, default_device, moment)
    if errors:
        raise InvalidBatch(errors)
    return Report(sender=sender, inferences=inferences)


def _sender(report: ReportIn, workflow: bool) -> Sender | None:
    name = report.inference_server_id or report.device_id
    if name is None:
        return None
    info = {field: value for field in SYSTEM_INFO if (value := getattr(report, field))}
    info["deployment_type"] = "workflow" if workflow else "inference-server"
    if report.device_id and report.device_id != name:
        info["device_id"] = report.device_id
    return Sender(
        device=name,
        version=report.inference_server_version,
        hostname=report.hostname,
        tags=[tag for tag in report.tags or [] if tag],  # servers send [""] for no tags
        info=info,
    )


def _server_result(
    raw: dict[str, Any],
    device: str | None,
    now: datetime,
    skew: timedelta,
    prefix: str,
    limits: ItemLimits = DEFAULT_LIMITS,
) -> Inference:
    result = _validated(ServerResultIn, raw, prefix)
    inference, request = result.inference, result.inference.request
    responses = inference.response
    if isinstance(responses, dict):
        responses = [responses]
    task = request.model_type if request.model_type in TASKS else None
    base: dict[str, Any] = {"model_id": request.model_id, "timestamp": result.request_time}
    if task:
        base["task"] = task
    parts = []
    for position, response in enumerate(responses or []):
        where = f"{prefix}.inference.response"
        if isinstance(inference.response, list):
            where += f"[{position}]"
        item = {**base, **{k: response[k] for k in RESPONSE_KEYS if k in response}}
        parts.append(_as_inference(item, task, now, skew, where, prefix, limits))
    if not parts:  # the server sends `response: []` when nothing was predicted
        parts.append(_as_inference(base, task, now, skew, f"{prefix}.inference", prefix, limits))
    times = [p.inference_time for p in parts if p.inference_time is not None]
    first = parts[0]
    first.inference_id = inference.inference_id or request.id or str(uuid.uuid4())
    first.device = inference.inference_server_id or device
    first.predictions = [p for part in parts for p in part.predictions]
    if len(parts) > 1:
        # A request over several images: its predictions are each image's (a classifier's
        # top of each), not the first image's scores; those stay in the item as sent.
        first.scores = None
    if len(first.predictions) > limits.predictions:  # a request over several images
        message = f"at most {limits.predictions} predictions"
        raise InvalidBatch([ItemError(None, f"{prefix}.inference.response", message)])
    first.task = next((p.task for p in parts if p.task), None)
    # A request over several images took the time of all of them.
    first.inference_time = sum(times) if times else None
    first.item = split_server_result(first, _without_keys(raw))  # see parse_report
    return first


def _without_keys(raw: dict[str, Any]) -> dict[str, Any]:
    """The result as sent, less the API key its request carried (never stored)."""
    inference = raw.get("inference")
    request = inference.get("request") if isinstance(inference, dict) else None
    if not isinstance(request, dict) or "api_key" not in request:
        return raw
    assert isinstance(inference, dict)
    cleaned = {k: v for k, v in request.items() if k != "api_key"}
    return {**raw, "inference": {**inference, "request": cleaned}}


def _as_inference(
    item: dict[str, Any],
    task: str | None,
    now: datetime,
    skew: timedelta,
    where: str,
    prefix: str,
    limits: ItemLimits = DEFAULT_LIMITS,
) -> Inference:
    predictions = item.get("predictions")
    if task == "multi-label-classification" and isinstance(predictions, list):
        # Condensed multi-label responses list every class with its score.
        item["predictions"] = {
            p.get("class"): {"confidence": p.get("confidence")}
            for p in predictions
            if isinstance(p, dict)
        }
    try:
        return parse_item(item, now=now, max_clock_skew=skew, limits=limits)
    except InvalidBatch as invalid:
        raise InvalidBatch(
            [
                ItemError(None, _report_path(e.path, where, prefix), e.message)
                for e in invalid.errors
            ]
        ) from None


def _report_path(path: str, response_path: str, prefix: str) -> str:
    """Where a field of the translated item came from in the report."""
    head = path.split(".", 1)[0].split("[", 1)[0]
    if head == "model_id":
        return f"{prefix}.inference.request.model_id"
    if head == "timestamp":
        return f"{prefix}.request_time"
    if head == "time":
        return f"{response_path}.time"
    return f"{response_path}.{path}" if path else response_path


def _workflow_inferences(
    rows: list[tuple[int, WorkflowResultIn]], device: str | None, moment: datetime
) -> list[Inference]:
    """The aggregator sends one row per prediction: rows sharing an inference id are one."""
    grouped: dict[str, list[tuple[int, WorkflowResultIn]]] = {}
    for index, row in rows:
        key = row.inference_id or f"{uuid.uuid4()}"
        grouped.setdefault(key, []).append((index, row))
    inferences = []
    for inference_id, members in grouped.items():
        first = members[0][1]
        task = first.model_type if first.model_type in TASKS else None
        item = {
            "model_id": first.model_id,
            "timestamp": moment.timestamp(),
            "predictions": [
                {"class": row.class_name, "confidence": row.confidence}
                for _, row in members
                if row.class_name is not None and row.confidence is not None
            ],
        }
        inference = parse_item(item, now=moment, max_clock_skew=timedelta(seconds=1))
        inference.inference_id = inference_id
        inference.device = device
        inference.task = task or inference.task
        inference.timestamp = moment
        inference.item = {
            "source": "workflow",
            "model_id": first.model_id,
            "results": [row.model_dump(exclude_none=True) for _, row in members],
        }
        inferences.append(inference)
    return inferences


# The farthest a local clock is from UTC (UTC+14), and some slack for the network.
LOCAL_TIME_REACH = timedelta(hours=14, minutes=15)


def _report_time(value: Any, now: datetime) -> datetime:
    """The report's time (the aggregator's rows carry no other), never later than now.

    inference's aggregator block stamps its report with the sending machine's local time
    and no offset (`datetime.now().isoformat()`), and sends it as soon as it is made. Read
    as UTC, a camera west of Greenwich would report hours in the past (UTC-8: eight hours;
    dashboards and silence alerts would miss it). A time without an offset within a time
    zone's reach of its arrival is therefore taken as the arrival; beyond that reach (an
    old report sent late) it is UTC, as everywhere in the API.
    """
    if value is None:
        return now
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected an ISO 8601 time or Unix seconds")
    moment = parse_time(value)
    if isinstance(value, str) and _without_offset(value) and abs(now - moment) <= LOCAL_TIME_REACH:
        return now
    return min(moment, now)


def _without_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is None
    except ValueError:
        return False  # Unix seconds as text: UTC by definition


def _first_request_key(results: list[Any]) -> str | None:
    for result in results:
        inference = result.get("inference") if isinstance(result, dict) else None
        request = inference.get("request") if isinstance(inference, dict) else None
        key = request.get("api_key") if isinstance(request, dict) else None
        if isinstance(key, str) and key:
            return key
    return None


def _validated(model: type[ModelT], raw: Any, prefix: str) -> ModelT:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InvalidBatch(field_errors(error, prefix)) from None
