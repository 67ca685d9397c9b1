"""The key cache settings that tests/auth/ builds its caches with (see tests/auth/conftest.py)."""

INTERVAL = 5.0  # min refetch interval
REFRESH = 300.0
STALENESS = 3600.0
SKEW = 30.0
JWKS_URL = "http://issuer.test/api/auth/jwks"
