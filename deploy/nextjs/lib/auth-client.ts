// The browser side of Better Auth, with the JWT client plugin (better-auth 1.7.25).
//
// jwtClient() itself only adds `authClient.jwks()`; `authClient.token()` is inferred from the
// server plugin's GET /api/auth/token endpoint. It sends the session cookie (same origin) and
// answers `{ data: { token }, error: null }`, or `{ data: null, error }` when signed out.
// React apps can import createAuthClient from "better-auth/react" instead, for useSession().

import { createAuthClient } from "better-auth/client";
import { jwtClient } from "better-auth/client/plugins";

export const authClient = createAuthClient({
  // Omitted in the browser: the page's origin, where app/api/auth/[...all]/route.ts serves Better Auth.
  baseURL: process.env.NEXT_PUBLIC_BETTER_AUTH_URL,
  plugins: [jwtClient()],
});

/** What `fetchJwt` needs: any Better Auth client with the jwt plugin (tests pass their own). */
export type JwtClient = Pick<typeof authClient, "token">;

/** A fresh JWT for the signed-in user (GET /api/auth/token); throws when signed out. Pass it as
 * `fetchToken` to createTasksApi (tasks-api.ts), which caches it until shortly before `exp`. */
export async function fetchJwt(client: JwtClient = authClient): Promise<string> {
  const { data, error } = await client.token();
  if (error) throw new Error(`Better Auth refused a token (${error.status}): ${error.message ?? error.statusText}`);
  return data.token;
}
