"""The database layer: engines, schema, dialect helpers and migrations."""
