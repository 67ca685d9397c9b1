// The sessionStatus plugin from the README, as an app adds it next to jwt(): lets the tasks service
// (SESSION_CHECK=http) ask whether the session behind a token's `sid` still exists.
//
//   POST /api/auth/session-status   Authorization: Bearer <SESSION_CHECK_SECRET>   {"sid": "..."}
//   -> 200 {"active": true | false}; 401 without the secret; 400 without a sid
//
// It looks the session up by id in Better Auth's database (what sign-out and bans delete).

import { timingSafeEqual } from "node:crypto";

import { APIError, createAuthEndpoint } from "better-auth/api";

export function sessionStatus({ secret }) {
  if (!secret || secret.length < 16) throw new Error("sessionStatus: a secret of at least 16 characters is required");
  const expected = Buffer.from(`Bearer ${secret}`);
  return {
    id: "session-status",
    endpoints: {
      sessionStatus: createAuthEndpoint("/session-status", { method: "POST" }, async (ctx) => {
        const given = Buffer.from(ctx.headers?.get("authorization") ?? "");
        if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
          throw new APIError("UNAUTHORIZED", { message: "a valid session-status secret is required" });
        }
        const sid = ctx.body?.sid;
        if (typeof sid !== "string" || sid.length === 0 || sid.length > 255) {
          throw new APIError("BAD_REQUEST", { message: "sid must be a non-empty string" });
        }
        const session = await ctx.context.adapter.findOne({ model: "session", where: [{ field: "id", value: sid }] });
        const active = session !== null && new Date(session.expiresAt).getTime() > Date.now();
        return ctx.json({ active });
      }),
    },
  };
}
