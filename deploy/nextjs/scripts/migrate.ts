// Creates Better Auth's tables (user, session, account, verification, and jwks for the jwt plugin)
// in DATABASE_URL, or adds what a newer better-auth needs, without asking: `npm run migrate`
// (`node --import tsx scripts/migrate.ts`).
//
// Better Auth's own programmatic migrator, from the installed (pinned) better-auth and the app's
// lib/auth.ts, so it runs wherever the app runs, Node 20 included. The CLIs are the alternatives:
// `npx @better-auth/cli migrate -y` (without -y it asks, and creates nothing when there is no
// terminal; it is the 1.4 line, with a better-auth 1.4 of its own) and `npx auth migrate` (the
// 1.7 line; it needs Node 22.12+). No top-level await: this runs as CommonJS too (a
// create-next-app package.json has no "type": "module").

import { getMigrations } from "better-auth/db/migration";
import type { Pool } from "pg";

import { auth } from "../lib/auth";

async function migrate(): Promise<void> {
  const { toBeCreated, toBeAdded, runMigrations } = await getMigrations(auth.options);
  const changes = [
    ...toBeCreated.map(({ table }) => `create ${table}`),
    ...toBeAdded.map(({ table, fields }) => `add ${Object.keys(fields).join(", ")} to ${table}`),
  ];
  if (changes.length > 0) await runMigrations();
  console.log(changes.length > 0 ? `migrate: ${changes.join("; ")}` : "migrate: Better Auth's tables are up to date");
}

if (!process.env.DATABASE_URL) {
  console.error("migrate: DATABASE_URL is not set (Better Auth's PostgreSQL database)");
  process.exit(2);
}
migrate()
  .catch((error: unknown) => {
    console.error("migrate:", error);
    process.exitCode = 1;
  })
  .finally(() => (auth.options.database as Pool).end());
