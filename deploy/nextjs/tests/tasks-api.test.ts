// lib/tasks-api.ts against the real tasks service, with tokens from the real Better Auth through
// the real client plugin (`authClient.token()` via lib/auth-client.ts's fetchJwt).

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { before, describe, test } from "node:test";

import { fetchJwt } from "../lib/auth-client";
import { createTasksApi, type TaskChange, TasksApiError } from "../lib/tasks-api";
import {
  authClientFor, bearerOf, claims, manualClock, recordingFetch, SERVICE_URL, signUp, sleep, TOKEN_LIFETIME_SECONDS, type User,
  waitFor,
} from "./support";

const MARGIN_SECONDS = 1;

/** An API client for `user` whose token calls (to Better Auth) and service calls are recorded. */
function apiFor(user: User, clock = manualClock(), fetchToken?: () => Promise<string>) {
  const issuer = recordingFetch();
  const service = recordingFetch();
  const client = authClientFor(user, issuer.fetch);
  const api = createTasksApi({
    baseUrl: SERVICE_URL,
    fetchToken: fetchToken ?? (() => fetchJwt(client)),
    fetch: service.fetch,
    now: clock.now,
    refreshMarginSeconds: MARGIN_SECONDS,
  });
  const tokenCalls = () => issuer.calls.filter((c) => c.url.pathname === "/api/auth/token").length;
  return { api, clock, tokenCalls, serviceCalls: service.calls };
}

async function rejectsWith(promise: Promise<unknown>, status: number, code: string): Promise<TasksApiError> {
  const error = await promise.then(() => assert.fail(`expected ${status} ${code}`), (e: unknown) => e);
  assert.ok(error instanceof TasksApiError, `not a TasksApiError: ${error}`);
  assert.equal(error.status, status, error.message);
  assert.equal(error.code, code);
  return error;
}

describe("the tasks API client", () => {
  let alice: User;
  before(async () => {
    alice = await signUp("Alice");
  });

  test("one /api/auth/token call serves many requests, concurrent first calls included", async () => {
    const { api, tokenCalls, serviceCalls } = apiFor(alice);
    await Promise.all([api.list(), api.list(), api.list()]);
    const created = await api.create({ title: "Buy milk", description: "2 L" }, { idempotencyKey: crypto.randomUUID() });
    const fetched = await api.get(created.task.id);
    assert.deepEqual(fetched, created);
    const updated = await api.update(created.task.id, { title: "Buy oat milk" }, { ifMatch: fetched.etag });
    const toggled = await api.toggleComplete(created.task.id, { ifMatch: updated.etag });
    assert.equal(toggled.task.completed, true);
    assert.deepEqual((await api.list({ status: "completed" })).tasks.map((t) => t.id), [created.task.id]);
    await api.remove(created.task.id, { ifMatch: toggled.etag });

    assert.equal(tokenCalls(), 1);
    assert.equal(serviceCalls.length, 9);
    const tokens = new Set(serviceCalls.map(bearerOf));
    assert.equal(tokens.size, 1, "every call carried the same Bearer token");
    assert.equal(claims([...tokens][0]).sub, alice.id);
    for (const call of serviceCalls) {
      assert.ok(call.url.pathname.startsWith(`/api/${alice.id}/tasks`), call.url.pathname);
      assert.ok(call.status < 400, `${call.method} ${call.url.pathname} -> ${call.status}`);
    }
  });

  test("the token is refreshed shortly before exp, by the injected clock", async () => {
    const { api, clock, tokenCalls, serviceCalls } = apiFor(alice);
    await api.list();
    const { iat, exp } = claims(bearerOf(serviceCalls[0]));
    assert.equal(exp! - iat!, TOKEN_LIFETIME_SECONDS); // the issuer's short jwt.expirationTime
    clock.set((exp! - MARGIN_SECONDS) * 1000 - 1);
    await api.list();
    assert.equal(tokenCalls(), 1, "still outside the refresh margin");
    clock.set((exp! - MARGIN_SECONDS) * 1000);
    await api.list();
    assert.equal(tokenCalls(), 2, "inside the margin: a new token");
  });

  test("a 401 is retried once with a fresh token; a second 401 is thrown", async () => {
    // The clock never moves, so the cache believes its token is fresh; the service (no leeway
    // here) refuses it once it has really expired, as with a client clock running late.
    const { api, tokenCalls, serviceCalls } = apiFor(alice);
    await api.list();
    const stale = bearerOf(serviceCalls[0]);
    await sleep(claims(stale).exp! * 1000 - Date.now() + 50);

    await api.list();
    assert.deepEqual(serviceCalls.map((c) => c.status), [200, 401, 200]);
    assert.equal(tokenCalls(), 2);
    assert.notEqual(bearerOf(serviceCalls[2]), stale);

    const stuck = apiFor(alice, manualClock(), async () => stale); // a source that only has the expired token
    await rejectsWith(stuck.api.list(), 401, "invalid_token");
    assert.deepEqual(stuck.serviceCalls.map((c) => c.status), [401, 401], "exactly one retry");
  });

  test("an empty baseUrl (NEXT_PUBLIC_TASKS_API_URL missing at build time) fails with a message naming it", () => {
    const fetchToken = async () => "unused";
    for (const baseUrl of [undefined as unknown as string, ""]) {
      assert.throws(() => createTasksApi({ baseUrl, fetchToken }), /baseUrl is empty \(NEXT_PUBLIC_TASKS_API_URL must be set when `next build` runs\)/);
    }
  });

  test("problem details become TasksApiError with the service's status and code", async () => {
    const { api } = apiFor(alice);
    await rejectsWith(api.get(987654321), 404, "task_not_found");
    const { task, etag } = await api.create({ title: "Paint the fence" });
    await api.update(task.id, { description: "white" }, { ifMatch: etag });
    const body = { title: "Paint it black", description: "", completed: false };
    await rejectsWith(api.replace(task.id, body, { ifMatch: etag }), 412, "precondition_failed");
    const invalid = await rejectsWith(api.create({ title: "" }), 422, "validation_failed");
    assert.ok(JSON.stringify(invalid.errors).includes("title"), JSON.stringify(invalid.errors));
  });

  test("the task model: move in the manual order, labels with counts, the new filters and sorts", async () => {
    const { api } = apiFor(await signUp("Dana"));
    const a = await api.create({ title: "a", labels: ["home", "work"], priority: "high", due: "2026-05-01" });
    const b = await api.create({ title: "b", labels: ["home"], priority: "low" });
    const c = await api.create({ title: "c" });
    const order = async () => (await api.list({ sort: "position" })).tasks.map((t) => t.title);
    assert.deepEqual(await order(), ["c", "b", "a"], "a new task goes to the top");

    const moved = await api.move(c.task.id, a.task.id, { ifMatch: c.etag });
    assert.equal(moved.task.id, c.task.id);
    assert.notEqual(moved.etag, c.etag);
    assert.deepEqual(await order(), ["b", "a", "c"]);
    await api.move(a.task.id, null);
    assert.deepEqual(await order(), ["a", "b", "c"]);
    await rejectsWith(api.move(b.task.id, null, { ifMatch: c.etag }), 412, "precondition_failed");
    const invalid = await rejectsWith(api.move(b.task.id, 987654321), 422, "validation_failed");
    assert.ok(JSON.stringify(invalid.errors).includes("after"), JSON.stringify(invalid.errors));

    assert.deepEqual(await api.labels(), [{ label: "home", tasks: 2 }, { label: "work", tasks: 1 }]);
    const titles = async (query: Parameters<typeof api.list>[0]) => (await api.list({ sort: "position", ...query })).tasks.map((t) => t.title);
    assert.deepEqual(await titles({ label: ["home", "work"] }), ["a"], "labels: all of");
    assert.deepEqual(await titles({ label: "home" }), ["a", "b"]);
    assert.deepEqual(await titles({ priority: ["low", "high"] }), ["a", "b"], "priorities: any of");
    assert.deepEqual(await titles({ has_due: false }), ["b", "c"]);
    assert.deepEqual(await titles({ due_after: "2026-05-01", due_before: "2026-05-02" }), ["a"]);
    assert.deepEqual((await api.list({ sort: "priority" })).tasks.map((t) => t.title), ["a", "b", "c"]);
    assert.deepEqual((await api.list({ sort: "due" })).tasks[0].title, "a", "undated tasks last");
  });

  test("changes pages the feed from a token; events streams each later change live, and resumes after a token", async () => {
    const { api } = apiFor(await signUp("Erin"));
    const first = await api.create({ title: "first" });
    const start = await api.changes();
    assert.deepEqual(start.changes, [{ op: "upsert", task: first.task }]);
    assert.equal(start.more, false);
    await api.remove(first.task.id);
    const afterDelete = await api.changes({ since: start.next });
    assert.deepEqual(afterDelete.changes, [{ op: "delete", id: first.task.id }]);

    const seen: { change: TaskChange; token: string }[] = [];
    let opened = 0;
    const stop = new AbortController();
    const following = api.events({
      since: afterDelete.next,
      signal: stop.signal,
      onOpen: () => void opened++,
      onChange: (change, token) => seen.push({ change, token }),
    });
    await waitFor(() => opened === 1, "the stream opened");
    const live = await api.create({ title: "made while following" });
    await waitFor(() => seen.length === 1, "the live change arrived");
    assert.deepEqual(seen[0].change, { op: "upsert", task: live.task });
    stop.abort();
    await following;

    // What changed while nobody followed comes first when following again from the last token.
    await api.update(live.task.id, { priority: "medium" });
    const again = new AbortController();
    const resumed: TaskChange[] = [];
    const following2 = api.events({ since: seen[0].token, signal: again.signal, onChange: (change) => resumed.push(change) });
    await waitFor(() => resumed.length === 1, "the missed change arrived");
    assert.equal(resumed[0].op, "upsert");
    assert.equal(resumed[0].op === "upsert" && resumed[0].task.priority, "medium");
    again.abort();
    await following2;

    await rejectsWith(api.changes({ since: "garbled!" }), 422, "validation_failed");
  });

  test("a sync token older than the retention: changes and events reject with 410 sync_token_expired", async () => {
    const frank = await signUp("Frank");
    const { api } = apiFor(frank);
    // The token format is the service's (opaque to clients, encoded, not signed): issued at 1970.
    const owner = createHash("sha256").update(frank.id).digest("hex").slice(0, 12);
    const expired = Buffer.from(`1.0..0.${owner}`).toString("base64url");
    await rejectsWith(api.changes({ since: expired }), 410, "sync_token_expired");
    const following = api.events({ since: expired, signal: new AbortController().signal, onChange: () => assert.fail("no change") });
    await rejectsWith(following, 410, "sync_token_expired");
  });
});
