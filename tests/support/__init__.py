"""Helpers shared by the tests and the bench; tests import them from here, never from a conftest
or another test module.

- app: the app in-process with its real lifespan, users with tokens, problem assertions.
- service_process: `python -m service run` as a child process (the one way to start it).
- embedded_postgres: a service's embedded PostgreSQL seen from outside (pg_ctl, leftovers).
- better_auth, node: the real Better Auth npm package run by Node.
- jwks_host: a FakeBetterAuth on a real port, for a service in another process.
- pgbouncer, tls, fixtures: a real pgbouncer, throw-away certificates, and the fixtures those
  tests import.
- row_locks, traffic, waiting, delayed_close_proxy, clock, ports: overlap, load, bounded waits,
  a half-closed database connection, a fake clock, a free port.
"""
