"""The dashboard: server-rendered pages over the same store functions as the API."""

import visionwatch.http.paths  # noqa: F401  (the `text` path convertor its routes use)
