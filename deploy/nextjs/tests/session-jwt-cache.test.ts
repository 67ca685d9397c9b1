// lib/session-jwt-cache.ts: the JWTs the /api/tasks proxy holds per Better Auth session. The
// sessions and tokens are real (GET /api/auth/get-session on the real Better Auth, its JWT in the
// `set-auth-jwt` header); the clock is the test's.

import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { SessionJwtCache, sessionTokenOf, type SessionJwt } from "../lib/session-jwt-cache";
import { claims, ISSUER_URL, manualClock, signUp, TOKEN_LIFETIME_SECONDS, type User } from "./support";

const DAY_MS = 24 * 60 * 60 * 1000;

/** The signed cookie value, as getSessionCookie() reads it from the browser's Cookie header. */
function cookieValue(user: User): string {
  return decodeURIComponent(user.cookie.slice(user.cookie.indexOf("=") + 1));
}

/** What route.ts's lookUpSession answers, from the real Better Auth over HTTP; counts its calls. */
function lookUp(user: User, calls: { count: number }, sessionExpiresAtMs = Date.now() + DAY_MS) {
  return async (): Promise<SessionJwt | null> => {
    calls.count += 1;
    const response = await fetch(`${ISSUER_URL}/api/auth/get-session`, { headers: { cookie: user.cookie } });
    const body = (await response.json()) as { user: { id: string }; session: { token: string } } | null;
    const token = response.headers.get("set-auth-jwt");
    if (!body || !token) return null;
    return { sessionToken: body.session.token, userId: body.user.id, token, sessionExpiresAtMs };
  };
}

describe("the proxy's per-session JWT cache", () => {
  let alice: User;
  let bob: User;
  before(async () => {
    [alice, bob] = await Promise.all([signUp("Alice"), signUp("Bob")]);
  });

  test("reuses a session's JWT until shortly before exp, then looks the session up again", async () => {
    const clock = manualClock();
    const cache = new SessionJwtCache({ now: clock.now });
    const calls = { count: 0 };
    const first = await cache.get(cookieValue(alice), lookUp(alice, calls));
    assert.equal(first?.userId, alice.id);
    const { iat, exp } = claims(first!.token);
    assert.equal(exp! - iat!, TOKEN_LIFETIME_SECONDS);

    // Refreshed at half-life for a short-lived token (the margin is 60 s otherwise).
    clock.set((iat! + TOKEN_LIFETIME_SECONDS / 2) * 1000 - 1);
    assert.deepEqual(await cache.get(cookieValue(alice), lookUp(alice, calls)), first);
    assert.equal(calls.count, 1);
    clock.set((iat! + TOKEN_LIFETIME_SECONDS / 2) * 1000);
    const second = await cache.get(cookieValue(alice), lookUp(alice, calls));
    assert.equal(calls.count, 2);
    assert.equal(second?.userId, alice.id);
  });

  test("never answers one session's JWT to another session, nor to a cookie with the same token but another signature", async () => {
    const cache = new SessionJwtCache();
    const calls = { count: 0 };
    const forAlice = await cache.get(cookieValue(alice), lookUp(alice, calls));
    const forBob = await cache.get(cookieValue(bob), lookUp(bob, calls));
    assert.equal(claims(forAlice!.token).sub, alice.id);
    assert.equal(claims(forBob!.token).sub, bob.id);
    assert.equal(calls.count, 2);

    const forged = `${sessionTokenOf(cookieValue(alice))}.forged-signature`;
    const refused = await cache.get(forged, async () => {
      calls.count += 1;
      return null; // Better Auth refuses the signature
    });
    assert.equal(refused, null);
    assert.equal(calls.count, 3);
  });

  test("drop (Better Auth deleted the session) forgets the JWT, and a lookup under way at that moment is not kept", async () => {
    const cache = new SessionJwtCache();
    const calls = { count: 0 };
    const cookie = cookieValue(alice);
    await cache.get(cookie, lookUp(alice, calls));
    cache.drop(sessionTokenOf(cookie));
    assert.equal(cache.size, 0);

    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slow = async () => {
      await gate;
      return lookUp(alice, calls)();
    };
    const racing = cache.get(cookie, slow);
    cache.drop(sessionTokenOf(cookie)); // sign-out while the lookup runs
    release();
    assert.equal((await racing)?.userId, alice.id);
    assert.equal(cache.size, 0, "a lookup that raced a sign-out must not be stored");
  });

  test("concurrent calls of one session share one lookup; a refresh bypasses the held JWT", async () => {
    const cache = new SessionJwtCache();
    const calls = { count: 0 };
    const answers = await Promise.all(Array.from({ length: 10 }, () => cache.get(cookieValue(bob), lookUp(bob, calls))));
    assert.equal(calls.count, 1);
    assert.ok(answers.every((answer) => answer?.token === answers[0]?.token));
    await cache.get(cookieValue(bob), lookUp(bob, calls), { refresh: true });
    assert.equal(calls.count, 2);
  });

  test("never reuses a JWT past the end of its session, and holds at most maxEntries sessions", async () => {
    const clock = manualClock();
    const cache = new SessionJwtCache({ now: clock.now, maxEntries: 1 });
    const calls = { count: 0 };
    const endsSoon = clock.now() + 100;
    await cache.get(cookieValue(alice), lookUp(alice, calls, endsSoon));
    clock.set(endsSoon);
    await cache.get(cookieValue(alice), lookUp(alice, calls, endsSoon + DAY_MS));
    assert.equal(calls.count, 2);

    await cache.get(cookieValue(bob), lookUp(bob, calls));
    assert.equal(cache.size, 1, "the oldest session made room");
    await cache.get(cookieValue(alice), lookUp(alice, calls));
    assert.equal(calls.count, 4);
  });
});
