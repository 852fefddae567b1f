"""Run by tests/support/roboflow_sdk.py: each step of a plan through Roboflow's SDK.

Arguments: an API key and a JSON file of steps, each {"call": <Workspace method or
"api.<function>" of roboflow.adapters.vision_events_api>, "args": [...], "kwargs": {...}}.
Prints one JSON line: per step, {"ok": answer} or {"error": the exception's text}; a step
"all" collects every page of query_all_vision_events.
"""

import json
import sys
from typing import Any

import roboflow
from roboflow.adapters import vision_events_api


def main() -> None:
    key, plan_file = sys.argv[1], sys.argv[2]
    with open(plan_file) as file:
        plan = json.load(file)
    workspace = roboflow.Roboflow(api_key=key).workspace()
    answers: list[dict[str, Any]] = []
    for step in plan:
        call, args, kwargs = step["call"], step.get("args", []), step.get("kwargs", {})
        try:
            if call.startswith("api."):
                answer = getattr(vision_events_api, call[4:])(*args, **kwargs)
            elif call == "query_all_vision_events":
                answer = list(workspace.query_all_vision_events(*args, **kwargs))
            else:
                answer = getattr(workspace, call)(*args, **kwargs)
            answers.append({"ok": answer})
        except Exception as error:  # the step's refusal is what the test looks at
            answers.append({"error": f"{type(error).__name__}: {error}"})
    print(json.dumps(answers, default=str))


if __name__ == "__main__":
    main()
