"""Capture rules: read by senders (the SDK), written by admins."""

from typing import Annotated, Self

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import Response

from visionwatch.api.deps import AdminKey, DatabaseDep, SenderKey
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS
from visionwatch.api.responses import JSON
from visionwatch.capture import WORKSPACE, CaptureRule
from visionwatch.items import ClassName, FieldName, MetadataValueIn, ModelName
from visionwatch.store import capture as capture_store
from visionwatch.timeutil import utcnow

router = APIRouter(prefix="/api/v1", tags=["images"])
Fraction = Annotated[float, Field(ge=0, le=1)]


class CaptureRuleIn(BaseModel):
    """Keep an inference's image when any reason holds; `model_id` null: every model."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)

    model_id: ModelName | None = None
    sample_rate: Fraction | None = Field(default=None, description="keep this random fraction")
    confidence_min: Fraction | None = Field(
        default=None, description="keep when a prediction's confidence is at least this..."
    )
    confidence_max: Fraction | None = Field(default=None, description="...and at most this")
    classes: list[ClassName] = Field(
        default_factory=list, max_length=1000, description="keep when a class is predicted"
    )
    metadata: dict[FieldName, MetadataValueIn] = Field(
        default_factory=dict, max_length=64, description="keep when every field matches"
    )
    daily_cap: int | None = Field(
        default=None, ge=0, le=10_000_000, description="images kept per model and UTC day"
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _band_in_order(self) -> Self:
        low, high = self.confidence_min, self.confidence_max
        if low is not None and high is not None and low > high:
            raise ValueError("confidence_min must not exceed confidence_max")
        return self

    def rule(self) -> CaptureRule:
        return CaptureRule(
            model=self.model_id or WORKSPACE,
            sample_rate=self.sample_rate,
            confidence_min=self.confidence_min,
            confidence_max=self.confidence_max,
            classes=frozenset(self.classes),
            metadata=dict(self.metadata),
            daily_cap=self.daily_cap,
            enabled=self.enabled,
        )


class CaptureRulesOut(BaseModel):
    rules: list[CaptureRuleIn]


@router.get(
    "/capture-rules",
    response_model=CaptureRulesOut,
    responses=AUTH_ERRORS,
    summary="The workspace's capture rules (a key with scope ingest or read)",
)
def get_rules(key: SenderKey, database: DatabaseDep) -> JSON:
    rules = capture_store.list_rules(database, key.workspace.id)
    return JSON({"rules": [rule.as_dict() for rule in rules]})


@router.put(
    "/capture-rules",
    response_model=CaptureRuleIn,
    responses={**AUTH_ERRORS, **VALIDATION_ERRORS},
    summary="Create or replace the rule of a model, or of the workspace (scope admin)",
)
def put_rule(body: CaptureRuleIn, key: AdminKey, database: DatabaseDep) -> JSON:
    rule = body.rule()
    capture_store.put_rule(database, key.workspace.id, rule, utcnow())
    return JSON(rule.as_dict())


@router.delete(
    "/capture-rules",
    status_code=204,
    responses={**AUTH_ERRORS, **NOT_FOUND},
    summary="Delete the rule of a model, or of the workspace without model_id (scope admin)",
)
def delete_rule(
    key: AdminKey,
    database: DatabaseDep,
    model_id: Annotated[str | None, Query(max_length=256)] = None,
) -> Response:
    if not capture_store.delete_rule(database, key.workspace.id, model_id or WORKSPACE):
        raise HTTPException(404, "no such capture rule")
    return Response(status_code=204)
