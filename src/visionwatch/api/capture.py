"""Capture rules: read by senders (the SDK), written by admins."""

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel
from starlette.responses import Response

from visionwatch.api.deps import AdminKey, SenderKey
from visionwatch.api.errors import AUTH_ERRORS, NOT_FOUND, VALIDATION_ERRORS
from visionwatch.capture import WORKSPACE
from visionwatch.http.deps import DatabaseDep, NowDep
from visionwatch.http.responses import JSON
from visionwatch.http.rules import CaptureRuleIn
from visionwatch.store import capture as capture_store

router = APIRouter(prefix="/api/v1", tags=["images"])


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
def put_rule(body: CaptureRuleIn, key: AdminKey, database: DatabaseDep, now: NowDep) -> JSON:
    rule = body.rule()
    capture_store.put_rule(database, key.workspace.id, rule, now)
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
