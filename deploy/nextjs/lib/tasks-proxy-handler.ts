// The /api/tasks proxy (lib/tasks-proxy.ts) wired to Better Auth and the per-session JWT cache:
// one instance, served by app/api/tasks/[[...path]]/route.ts and app/api/labels/route.ts.
// Runs on the Node.js runtime (the default): Better Auth here talks to PostgreSQL through pg.

import { getSessionCookie } from "better-auth/cookies";

import { auth } from "./auth";
import { sessionJwts, type SessionJwt } from "./session-jwt-cache";
import { createTasksProxy } from "./tasks-proxy";

/** One Better Auth call for both the session and a JWT: getSession checks the cookie against the
 * database, and the jwt plugin answers a freshly signed token in its `set-auth-jwt` header. */
async function lookUpSession(headers: Headers): Promise<SessionJwt | null> {
  const { headers: answered, response } = await auth.api.getSession({ headers, returnHeaders: true });
  const token = answered.get("set-auth-jwt");
  if (!response || !token) return null;
  const { session, user } = response;
  return { sessionToken: session.token, userId: user.id, token, sessionExpiresAtMs: new Date(session.expiresAt).getTime() };
}

export const tasksProxy = createTasksProxy({
  serviceUrl: process.env.TASKS_API_URL ?? "http://127.0.0.1:8000",
  async authenticate(headers, { refresh }) {
    // No session cookie, no lookup. Otherwise the JWT held for this session (lib/session-jwt-cache.ts)
    // until shortly before its `exp`: most calls cost no database query and no signature here.
    const cookie = getSessionCookie(headers);
    if (!cookie) return null;
    return sessionJwts.get(cookie, () => lookUpSession(headers), { refresh });
  },
});
