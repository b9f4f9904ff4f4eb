"""Shared test helpers (schema validation, fixtures) reused across test suites."""
