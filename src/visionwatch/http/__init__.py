"""What the API (`api/`) and the dashboard (`web/`) both serve from: request dependencies,
responses, query parameters, the rule models both accept, and file downloads.

`api/` and `web/` never import each other; both import this, and this imports neither.
"""
