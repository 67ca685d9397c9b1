// Shared by the tests: where the real service and the real Better Auth run (started by
// tests/interop/test_nextjs.py), users signed up over HTTP, and fetch wrappers that record calls.

import { createAuthClient } from "better-auth/client";
import { jwtClient } from "better-auth/client/plugins";

import { readUnverifiedClaims } from "../lib/token-cache";

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through pytest tests/interop/test_nextjs.py`);
  return value;
}

export const SERVICE_URL = required("TASKS_API_URL"); // `python -m service run`, BETTER_AUTH_URL = ISSUER_URL
export const ISSUER_URL = required("ISSUER_URL"); // tests/interop/issuer/server.mjs (better-auth 1.7.25)
export const TOKEN_LIFETIME_SECONDS = Number(required("TOKEN_LIFETIME_SECONDS")); // its jwt.expirationTime

export interface User {
  id: string;
  cookie: string; // "better-auth.session_token=…", as a browser would send it
}

/** POST /api/auth/sign-up/email on the issuer, as the Better Auth client does; signed in at once. */
export async function signUp(name: string): Promise<User> {
  const email = `${name.toLowerCase()}-${crypto.randomUUID()}@example.com`;
  const response = await fetch(`${ISSUER_URL}/api/auth/sign-up/email`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: ISSUER_URL },
    body: JSON.stringify({ email, password: "correct horse battery staple", name }),
  });
  if (response.status !== 200) throw new Error(`sign-up: ${response.status} ${await response.text()}`);
  const body = (await response.json()) as { user: { id: string } };
  const cookie = response.headers.getSetCookie().map((c) => c.split(";")[0]).find((c) => c.startsWith("better-auth.session_token="));
  if (!cookie) throw new Error("sign-up set no better-auth.session_token cookie");
  return { id: body.user.id, cookie };
}

export interface Recorded {
  method: string;
  url: URL;
  headers: Headers;
  status: number;
}

/** globalThis.fetch, recording each call (method, URL, request headers, response status). */
export function recordingFetch(): { fetch: typeof fetch; calls: Recorded[] } {
  const calls: Recorded[] = [];
  const wrapped = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input, init);
    const response = await fetch(request);
    calls.push({ method: request.method, url: new URL(request.url), headers: request.headers, status: response.status });
    return response;
  };
  return { fetch: wrapped as typeof fetch, calls };
}

/** A real Better Auth client with the jwt plugin, as lib/auth-client.ts makes one, but pointed at
 * the issuer and sending this user's cookie (a browser would send it by itself). */
export function authClientFor(user: User, customFetchImpl: typeof fetch) {
  return createAuthClient({
    baseURL: ISSUER_URL,
    plugins: [jwtClient()],
    fetchOptions: { headers: { cookie: user.cookie }, customFetchImpl },
  });
}

/** A clock the test moves: milliseconds since the epoch. */
export function manualClock(startMs = Date.now()) {
  let nowMs = startMs;
  return { now: () => nowMs, set: (ms: number) => void (nowMs = ms) };
}

export const claims = readUnverifiedClaims;

export function bearerOf(call: Recorded): string {
  const header = call.headers.get("authorization") ?? "";
  if (!header.startsWith("Bearer ")) throw new Error(`no Bearer token on ${call.method} ${call.url}`);
  return header.slice("Bearer ".length);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `condition` every 20 ms; fails naming `what` after `timeoutMs`. */
export async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${what}`);
    await sleep(20);
  }
}
