"""The JSON API v1: one module per resource, shared dependencies in deps.py."""

import visionwatch.http.paths  # noqa: F401  (the `text` path convertor its routes use)
