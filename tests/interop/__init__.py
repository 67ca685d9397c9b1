"""Interop tests against the real Better Auth npm package (a package, so its conftest does not
shadow tests/conftest.py, which other test modules import as `conftest`)."""
