"""Helpers for tests that run real outside programs (pgbouncer, several service processes)."""
