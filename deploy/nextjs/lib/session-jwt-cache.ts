// The JWTs the /api/tasks proxy holds for signed-in sessions, so that a proxied call costs no
// session lookup and no signature in this app, and the tasks service sees the same token again
// (its verified-token cache then answers without checking a signature either).
//
// - One entry per Better Auth session, found by the browser's signed session cookie: a cookie
//   matches only if it is byte for byte the one Better Auth accepted when the JWT was obtained.
// - Reused until shortly before the JWT's `exp` (token-cache.ts), and never past the session's
//   own `expiresAt`.
// - Dropped when Better Auth deletes the session (sign-out, revocation: see lib/auth.ts), and a
//   lookup that was under way at that moment is not stored.
// - Concurrent calls of one session share one lookup (single flight); the number of entries is
//   bounded, the oldest going first.
//
// Plain TypeScript (no Next.js, no Better Auth import): the lookup and the clock are parameters.

import { DEFAULT_REFRESH_MARGIN_SECONDS, refreshAtMs } from "./token-cache";

/** What one session lookup answers (in route.ts: `auth.api.getSession` and its `set-auth-jwt`). */
export interface SessionJwt {
  /** Better Auth's session token: the cookie's value without its signature. */
  sessionToken: string;
  userId: string;
  /** A JWT for `userId`, as GET /api/auth/token would answer. */
  token: string;
  /** When the session itself ends (milliseconds since the epoch). */
  sessionExpiresAtMs: number;
}

export interface SessionJwtCacheOptions {
  /** Milliseconds since the epoch, like Date.now (the default). Tests pass a clock they move. */
  now?: () => number;
  refreshMarginSeconds?: number;
  maxEntries?: number;
}

export const DEFAULT_MAX_ENTRIES = 10_000;

interface Entry {
  cookie: string;
  userId: string;
  token: string;
  reuseUntilMs: number;
}

interface Pending {
  sessionToken: string;
  dropped: boolean;
  promise: Promise<SessionJwt | null>;
}

/** The session token inside a signed Better Auth session cookie (`<token>.<signature>`). */
export function sessionTokenOf(cookie: string): string {
  const dot = cookie.lastIndexOf(".");
  return dot > 0 ? cookie.slice(0, dot) : cookie;
}

export class SessionJwtCache {
  readonly #now: () => number;
  readonly #marginSeconds: number;
  readonly #maxEntries: number;
  readonly #entries = new Map<string, Entry>(); // by session token, oldest first
  readonly #pending = new Map<string, Pending>(); // by cookie

  constructor(options: SessionJwtCacheOptions = {}) {
    this.#now = options.now ?? Date.now;
    this.#marginSeconds = options.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS;
    this.#maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  }

  get size(): number {
    return this.#entries.size;
  }

  /** The user and JWT for the session of `cookie` (the signed session cookie's value): the held
   * one, or what `lookUp` answers (null: no such session). `refresh` skips the held one, e.g.
   * after the service refused it. */
  async get(
    cookie: string,
    lookUp: () => Promise<SessionJwt | null>,
    options: { refresh?: boolean } = {},
  ): Promise<{ userId: string; token: string } | null> {
    const sessionToken = sessionTokenOf(cookie);
    const held = this.#entries.get(sessionToken);
    if (held !== undefined && held.cookie === cookie) {
      if (!options.refresh && this.#now() < held.reuseUntilMs) return { userId: held.userId, token: held.token };
      this.#entries.delete(sessionToken);
    }
    let pending = this.#pending.get(cookie);
    if (pending === undefined) {
      const started = { sessionToken, dropped: false } as Pending;
      // Stored and unregistered before any caller resumes: a call right after sees the result.
      started.promise = lookUp()
        .then((found) => {
          if (found !== null && !started.dropped && found.sessionToken === sessionToken) this.#store(cookie, found);
          return found;
        })
        .finally(() => {
          if (this.#pending.get(cookie) === started) this.#pending.delete(cookie);
        });
      this.#pending.set(cookie, started);
      pending = started;
    }
    const found = await pending.promise;
    return found === null ? null : { userId: found.userId, token: found.token };
  }

  /** Forget the session's JWT (Better Auth deleted the session); a lookup under way is not kept. */
  drop(sessionToken: string): void {
    this.#entries.delete(sessionToken);
    for (const pending of this.#pending.values()) {
      if (pending.sessionToken === sessionToken) pending.dropped = true;
    }
  }

  clear(): void {
    this.#entries.clear();
    for (const pending of this.#pending.values()) pending.dropped = true;
  }

  #store(cookie: string, found: SessionJwt): void {
    const reuseUntilMs = Math.min(refreshAtMs(found.token, this.#marginSeconds), found.sessionExpiresAtMs);
    if (this.#now() >= reuseUntilMs) return;
    this.#entries.delete(found.sessionToken); // re-inserted last: the newest
    this.#entries.set(found.sessionToken, { cookie, userId: found.userId, token: found.token, reuseUntilMs });
    for (const oldest of this.#entries.keys()) {
      if (this.#entries.size <= this.#maxEntries) break;
      this.#entries.delete(oldest);
    }
  }
}

// One cache per server process. Next.js may load a module once per route bundle; on globalThis the
// auth route (which drops entries on sign-out) and the tasks proxy share the same one.
const GLOBAL_KEY = Symbol.for("tasks-service.session-jwt-cache");
type WithCache = typeof globalThis & { [GLOBAL_KEY]?: SessionJwtCache };

/** The process-wide cache used by app/api/tasks/[[...path]]/route.ts and lib/auth.ts. */
export const sessionJwts: SessionJwtCache = ((globalThis as WithCache)[GLOBAL_KEY] ??= new SessionJwtCache());
