"""Interop tests against the real Better Auth npm package."""
