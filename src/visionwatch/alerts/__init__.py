"""Alerting: rules over the rollups, their states, and notifications by email and webhook."""
