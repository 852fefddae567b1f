"""Compatibility with other products' payloads and APIs."""
