// Better Auth on the Next.js server (better-auth 1.7.25), with the jwt() plugin the tasks service
// relies on. Served by app/api/auth/[...all]/route.ts:
//   import { toNextJsHandler } from "better-auth/next-js";
//   export const { GET, POST } = toNextJsHandler(auth);
//
// Why the tasks service needs no shared secret: jwt() signs with an asymmetric private key
// (EdDSA by default) kept in this app's `jwks` table, and publishes the public halves at
// GET {BETTER_AUTH_URL}/api/auth/jwks. The service fetches that JWKS and verifies every token
// offline. BETTER_AUTH_SECRET (read from the environment) signs this app's cookies and encrypts
// the private keys at rest; it never leaves this app. Whoever can answer the JWKS URL can mint
// tokens, so the service must reach it over HTTPS or a private network.

import { betterAuth } from "better-auth";
import { jwt } from "better-auth/plugins";
import { Pool } from "pg";

import { sessionJwts } from "./session-jwt-cache";

const DAY_SECONDS = 24 * 60 * 60;

export const auth = betterAuth({
  // The public origin of this app. Better Auth puts it in every JWT's `iss` and `aud`, and the
  // service expects exactly that: its BETTER_AUTH_URL must be the same origin (or set
  // JWT_ISSUER / JWT_AUDIENCE there). Defaults to the BETTER_AUTH_URL environment variable.
  baseURL: process.env.BETTER_AUTH_URL,
  // A persistent database: the signing keys live in its `jwks` table (create the tables with
  // `npm run migrate`, scripts/migrate.ts). With the memory adapter every restart makes a new key,
  // and tokens signed before it stop working once the service refreshes its key set.
  // node-postgres also takes a Unix socket: postgresql://user@/db?host=/path/to/socket/dir
  database: new Pool({ connectionString: process.env.DATABASE_URL }),
  emailAndPassword: { enabled: true },
  // Better Auth's rate limiter (on by default in production: 100 requests per 10 s per client IP
  // and path) must not throttle the JWKS: every replica of the tasks service fetches it from one
  // egress IP, and a 429 there delays key rotation for everyone. The JWKS is public and cheap.
  rateLimit: { customRules: { "/jwks": false } },
  databaseHooks: {
    session: {
      delete: {
        // Sign-out and revocations delete the session: the /api/tasks proxy stops using the JWT it
        // held for it at once (lib/session-jwt-cache.ts), instead of until the JWT's refresh time.
        after: async (session) => sessionJwts.drop(session.token),
      },
    },
  },
  plugins: [
    jwt({
      jwks: {
        // Must be in the service's JWT_ALGORITHMS (by default EdDSA, ES256, ES512, RS256, PS256).
        // HS256 does not exist here: the plugin has no shared-secret mode.
        keyPairConfig: { alg: "EdDSA" },
        // Optional rotation: a new key is made when the first token is signed after this interval.
        // Nothing is announced in advance; the service refetches the JWKS when it meets an
        // unknown `kid`, so rotation needs no coordination.
        rotationInterval: 30 * DAY_SECONDS,
        // How long a rotated-out key stays published. Keep it well above the token lifetime, or
        // tokens signed just before a rotation are refused before they expire.
        gracePeriod: 30 * DAY_SECONDS,
      },
      jwt: {
        // Tokens cannot be revoked (the service checks signature and claims, not sessions), so
        // keep them short: signing out stops new tokens, not ones already handed out.
        // lib/tasks-api.ts and the proxy's cache refresh shortly before `exp`. JWT_EXPIRATION_TIME
        // (e.g. "10s") is for tests that want to see refreshes and key rotations in seconds.
        expirationTime: process.env.JWT_EXPIRATION_TIME || "15m",
        // issuer / audience default to baseURL; if you change them, set JWT_ISSUER /
        // JWT_AUDIENCE on the service to match.
      },
    }),
  ],
});

export type Session = typeof auth.$Infer.Session;
