// A cached Better Auth JWT: fetched once, reused until shortly before its `exp`, then refetched.
//
// Plain TypeScript (no Next.js, no Better Auth import): the token source and the clock are
// parameters, so the same code runs in the browser, on the server and in the tests.

/** Claims read from a token without verifying it (the tasks service verifies; we only schedule). */
export interface UnverifiedClaims {
  sub?: string;
  iat?: number;
  exp?: number;
}

/** Refresh this long before `exp` (capped at half the token's lifetime for short-lived tokens). */
export const DEFAULT_REFRESH_MARGIN_SECONDS = 60;

/** The payload of a compact JWS, decoded but NOT verified. Throws on anything else. */
export function readUnverifiedClaims(token: string): UnverifiedClaims {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("not a JWT: expected three dot-separated parts");
  const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
  const claims: unknown = JSON.parse(new TextDecoder().decode(bytes));
  if (typeof claims !== "object" || claims === null) throw new Error("not a JWT: the payload is not an object");
  return claims as UnverifiedClaims;
}

export interface TokenCacheOptions {
  /** Milliseconds since the epoch, like Date.now (the default). Tests pass a clock they move. */
  now?: () => number;
  refreshMarginSeconds?: number;
}

export class TokenCache {
  readonly #fetchToken: () => Promise<string>;
  readonly #now: () => number;
  readonly #marginSeconds: number;
  #token: string | null = null;
  #refreshAtMs = 0;
  #pending: Promise<string> | null = null;

  /** `fetchToken` gets a fresh JWT, e.g. `fetchJwt` from auth-client.ts (`authClient.token()`). */
  constructor(fetchToken: () => Promise<string>, options: TokenCacheOptions = {}) {
    this.#fetchToken = fetchToken;
    this.#now = options.now ?? Date.now;
    this.#marginSeconds = options.refreshMarginSeconds ?? DEFAULT_REFRESH_MARGIN_SECONDS;
  }

  /** The cached token, or a fresh one when none is held or `exp` is near. Concurrent callers
   * share one fetch (single flight). */
  async get(): Promise<string> {
    if (this.#token !== null && this.#now() < this.#refreshAtMs) return this.#token;
    this.#pending ??= this.#refresh().finally(() => {
      this.#pending = null;
    });
    return this.#pending;
  }

  /** Forget `token` (e.g. the service answered 401 to it) so the next `get` fetches a new one.
   * A token that was already replaced is left alone. Without an argument: forget whatever is held
   * (call it on sign-out). */
  invalidate(token?: string): void {
    if (token === undefined || token === this.#token) {
      this.#token = null;
      this.#refreshAtMs = 0;
    }
  }

  async #refresh(): Promise<string> {
    const token = await this.#fetchToken();
    this.#refreshAtMs = refreshAtMs(token, this.#marginSeconds);
    this.#token = token;
    return token;
  }
}

/** When to stop reusing `token` (milliseconds since the epoch): `marginSeconds` before its `exp`,
 * or at half-life when the token lives less than twice the margin; 0 (use it once) without `exp`. */
export function refreshAtMs(token: string, marginSeconds: number = DEFAULT_REFRESH_MARGIN_SECONDS): number {
  const { iat, exp } = readUnverifiedClaims(token);
  if (typeof exp !== "number") return 0;
  // Better Auth's tokens carry iat; with a short lifetime, refresh at half-life rather than on every call.
  const lifetime = typeof iat === "number" ? exp - iat : Infinity;
  return (exp - Math.min(marginSeconds, lifetime / 2)) * 1000;
}
