"""The capture rules page: which images the SDK uploads, per workspace and per model."""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from visionwatch.capture import WORKSPACE
from visionwatch.http.deps import DatabaseDep, clock_of
from visionwatch.http.rules import CaptureRuleIn
from visionwatch.store import capture as capture_store
from visionwatch.web.auth import UserDep, read_form
from visionwatch.web.errors import form_errors
from visionwatch.web.rendering import render

router = APIRouter(include_in_schema=False)
PAGE = "/capture-rules"


@router.get(PAGE)
def rules_page(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    rules = capture_store.list_rules(database, user.workspace.id)
    return render(request, "capture_rules.html", {"user": user, "rules": rules, "errors": []})


@router.post(PAGE)
async def save_rule(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    form = await read_form(request)
    try:
        rule = CaptureRuleIn.model_validate(rule_fields(form), strict=False).rule()
    except ValidationError as error:
        errors = form_errors(error)
    except ValueError as error:  # a field that is not a number, or a bad metadata line
        errors = [str(error)]
    else:
        await run_in_threadpool(
            capture_store.put_rule, database, user.workspace.id, rule, clock_of(request)
        )
        return RedirectResponse(PAGE, status_code=303)
    rules = await run_in_threadpool(capture_store.list_rules, database, user.workspace.id)
    context = {"user": user, "rules": rules, "errors": errors, "form": form}
    return render(request, "capture_rules.html", context, status_code=400)


@router.post(f"{PAGE}/delete")
async def delete_rule(request: Request, user: UserDep, database: DatabaseDep) -> Response:
    form = await read_form(request)
    model = form.get("model_id", "").strip() or WORKSPACE
    await run_in_threadpool(capture_store.delete_rule, database, user.workspace.id, model)
    return RedirectResponse(PAGE, status_code=303)


def rule_fields(form: dict[str, str]) -> dict[str, Any]:
    """The form's text fields as the API's rule: blank means unset."""

    def number(name: str, kind: type = float) -> Any:
        raw = form.get(name, "").strip()
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name}: {raw!r} is not a number") from None

    metadata: dict[str, Any] = {}
    for line in form.get("metadata", "").splitlines():
        if line.strip():
            field, separator, value = line.partition("=")
            if not separator:
                raise ValueError(f"metadata: write one field=value per line, not {line!r}")
            metadata[field.strip()] = value.strip()
    return {
        "model_id": form.get("model_id", "").strip() or None,
        "sample_rate": number("sample_rate"),
        "confidence_min": number("confidence_min"),
        "confidence_max": number("confidence_max"),
        "classes": [c.strip() for c in form.get("classes", "").split(",") if c.strip()],
        "metadata": metadata,
        "daily_cap": number("daily_cap", int),
        "enabled": form.get("enabled") == "on",
    }
