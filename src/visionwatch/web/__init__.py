"""The dashboard: server-rendered pages over the same store functions as the API."""
