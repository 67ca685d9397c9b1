// lib/tasks-proxy.ts (what app/api/tasks/[[...path]]/route.ts serves) against the real tasks
// service. The session and the JWT come from the real Better Auth over HTTP: GET
// /api/auth/get-session with the browser's cookie answers the user and, in its `set-auth-jwt`
// header, a JWT for them (route.ts gets the same from auth.api.getSession / getToken in-process).

import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { readEvents, type ServerSentEvent } from "../lib/event-stream";
import { createTasksProxy, type ProxyIdentity } from "../lib/tasks-proxy";
import { bearerOf, claims, ISSUER_URL, recordingFetch, SERVICE_URL, signUp, sleep, type User } from "./support";

const NEXT_ORIGIN = "http://next.test"; // the browser's view; the proxy never calls it

async function sessionIdentity(headers: Headers): Promise<ProxyIdentity | null> {
  const cookie = headers.get("cookie");
  if (!cookie) return null;
  const response = await fetch(`${ISSUER_URL}/api/auth/get-session`, { headers: { cookie } });
  const session = (await response.json()) as { user: { id: string } } | null;
  const token = response.headers.get("set-auth-jwt");
  return session && token ? { userId: session.user.id, token } : null;
}

function setUp(serviceUrl = SERVICE_URL, timeoutMs?: number) {
  const service = recordingFetch();
  const proxy = createTasksProxy({ serviceUrl, authenticate: sessionIdentity, fetch: service.fetch, timeoutMs });
  /** A browser request to the Next.js app, with `user`'s session cookie (none for null). */
  const browse = (user: User | null, path: string, init: RequestInit & { headers?: Record<string, string> } = {}) => {
    const headers = { ...init.headers, ...(user && { cookie: `${user.cookie}; theme=dark` }) };
    return proxy(new Request(`${NEXT_ORIGIN}${path}`, { ...init, headers }));
  };
  return { browse, calls: service.calls };
}

async function json(response: Response): Promise<any> {
  return JSON.parse(await response.text());
}

describe("the /api/tasks proxy", () => {
  let alice: User;
  let bob: User;
  before(async () => {
    [alice, bob] = await Promise.all([signUp("Alice"), signUp("Bob")]);
  });

  test("POST: the session's user, a Bearer JWT instead of cookies, Idempotency-Key and X-Request-ID forwarded, Location rewritten", async () => {
    const { browse, calls } = setUp();
    const key = crypto.randomUUID();
    const post = () =>
      browse(alice, "/api/tasks", {
        method: "POST",
        body: JSON.stringify({ title: "Buy milk" }),
        headers: {
          "Content-Type": "application/json",
          "Idempotency-Key": key,
          "X-Request-ID": "req-from-browser-1",
          Authorization: "Bearer forged-by-the-browser",
        },
      });
    const first = await post();
    assert.equal(first.status, 201, await first.clone().text());
    const task = await json(first);
    assert.equal(task.user_id, alice.id);
    assert.equal(first.headers.get("location"), `/api/tasks/${task.id}`);
    assert.match(first.headers.get("etag") ?? "", /^"\d+-\d+"$/);
    assert.equal(first.headers.get("x-request-id"), "req-from-browser-1");
    assert.equal(first.headers.get("content-type"), "application/json");

    const replay = await post();
    assert.equal(replay.status, 201);
    assert.equal(replay.headers.get("idempotent-replayed"), "true");
    assert.equal((await json(replay)).id, task.id);

    const [call] = calls;
    assert.equal(call.method, "POST");
    assert.equal(call.url.href, `${SERVICE_URL}/api/${alice.id}/tasks`);
    assert.equal(call.headers.get("cookie"), null);
    assert.equal(claims(bearerOf(call)).sub, alice.id);
    assert.equal(call.headers.get("idempotency-key"), key);
    assert.equal(call.headers.get("x-request-id"), "req-from-browser-1");
    assert.equal(call.headers.get("content-type"), "application/json");
  });

  test("If-Match goes through and ETag comes back: 412 on a stale one, 204 on delete", async () => {
    const { browse, calls } = setUp();
    const created = await browse(alice, "/api/tasks", { method: "POST", body: JSON.stringify({ title: "Paint" }), headers: { "Content-Type": "application/json" } });
    const { id } = await json(created);
    const got = await browse(alice, `/api/tasks/${id}`);
    const etag = got.headers.get("etag")!;
    assert.equal(etag, created.headers.get("etag"));

    const patch = (ifMatch: string) =>
      browse(alice, `/api/tasks/${id}`, { method: "PATCH", body: JSON.stringify({ description: "white" }), headers: { "Content-Type": "application/json", "If-Match": ifMatch } });
    const patched = await patch(etag);
    assert.equal(patched.status, 200);
    assert.notEqual(patched.headers.get("etag"), etag);
    const stale = await patch(etag);
    assert.equal(stale.status, 412);
    assert.equal(stale.headers.get("content-type"), "application/problem+json");
    assert.equal((await json(stale)).code, "precondition_failed");

    const toggled = await browse(alice, `/api/tasks/${id}/complete`, { method: "PATCH", headers: { "If-Match": patched.headers.get("etag")! } });
    assert.equal((await json(toggled)).completed, true);
    const deleted = await browse(alice, `/api/tasks/${id}`, { method: "DELETE", headers: { "If-Match": toggled.headers.get("etag")! } });
    assert.equal(deleted.status, 204);
    assert.equal(await deleted.text(), "");

    assert.deepEqual(calls.map((c) => c.headers.get("if-match")), [null, null, etag, etag, patched.headers.get("etag"), toggled.headers.get("etag")]);
    assert.ok(calls.every((c) => c.url.pathname.startsWith(`/api/${alice.id}/tasks`) && c.headers.get("cookie") === null));
  });

  test("query strings go through and the Link to the next page is rewritten to the proxy", async () => {
    const { browse } = setUp();
    const carol = await signUp("Carol");
    for (const title of ["one", "two", "three"]) {
      await browse(carol, "/api/tasks", { method: "POST", body: JSON.stringify({ title }), headers: { "Content-Type": "application/json" } });
    }
    const first = await browse(carol, "/api/tasks?sort=created_at&limit=2");
    assert.deepEqual((await json(first)).map((t: { title: string }) => t.title), ["one", "two"]);
    const link = /^<([^>]+)>; rel="next"$/.exec(first.headers.get("link") ?? "");
    assert.ok(link, `Link: ${first.headers.get("link")}`);
    assert.ok(link[1].startsWith("/api/tasks?"), link[1]);
    const second = await browse(carol, link[1]);
    assert.deepEqual((await json(second)).map((t: { title: string }) => t.title), ["three"]);
    assert.equal(second.headers.get("link"), null);
  });

  test("the user comes from the session only: no cookie is 401, other users' tasks stay out of reach", async () => {
    const { browse, calls } = setUp();
    const created = await browse(alice, "/api/tasks", { method: "POST", body: JSON.stringify({ title: "Alice's" }), headers: { "Content-Type": "application/json" } });
    const { id } = await json(created);
    calls.length = 0;

    const anonymous = await browse(null, "/api/tasks");
    assert.equal(anonymous.status, 401);
    assert.equal((await json(anonymous)).code, "not_signed_in");
    for (const path of [`/api/tasks/../${alice.id}/tasks`, `/api/tasks/%2e%2e/${alice.id}/tasks/${id}`, `/api/tasks/${id}%2F..`, "/api/tasksx"]) {
      const response = await browse(bob, path);
      assert.equal(response.status, 404, path);
      assert.equal((await json(response)).code, "not_found", path);
    }
    assert.equal(calls.length, 0, "nothing above reached the service");

    const mine = await browse(bob, `/api/tasks/${id}`);
    assert.equal(mine.status, 404);
    assert.equal((await json(mine)).code, "task_not_found");
    const list = await json(await browse(bob, "/api/tasks"));
    assert.ok(list.every((t: { user_id: string }) => t.user_id === bob.id));
    assert.deepEqual(calls.map((c) => c.url.pathname), [`/api/${bob.id}/tasks/${id}`, `/api/${bob.id}/tasks`]);
  });

  test("a JWT the service refuses (401) is replaced once: authenticate is asked again with refresh", async () => {
    const service = recordingFetch();
    const asked: boolean[] = [];
    const proxy = createTasksProxy({
      serviceUrl: SERVICE_URL,
      fetch: service.fetch,
      async authenticate(headers, { refresh }) {
        asked.push(refresh);
        const identity = await sessionIdentity(headers);
        // What a cache holds after its key was removed: a JWT the service no longer takes.
        return identity && !refresh ? { ...identity, token: `${identity.token.slice(0, -4)}AAAA` } : identity;
      },
    });
    const response = await proxy(new Request(`${NEXT_ORIGIN}/api/tasks`, { headers: { cookie: alice.cookie } }));
    assert.equal(response.status, 200, await response.clone().text());
    assert.deepEqual(asked, [false, true]);
    assert.deepEqual(service.calls.map((c) => c.status), [401, 200]);
  });

  test("an unreachable service is a 502 problem", async () => {
    const { browse } = setUp("http://127.0.0.1:9"); // discard port: nothing listens
    const response = await browse(alice, "/api/tasks");
    assert.equal(response.status, 502);
    assert.equal((await json(response)).code, "upstream_unavailable");
  });

  test("labels, move and changes go through: /api/labels is the service's /api/{user}/labels, read-only", async () => {
    const { browse, calls } = setUp();
    const dave = await signUp("Dave");
    const post = async (path: string, body: unknown) =>
      browse(dave, path, { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } });
    const x = await json(await post("/api/tasks", { title: "x", labels: ["home"] }));
    const y = await json(await post("/api/tasks", { title: "y" }));

    const labels = await browse(dave, "/api/labels");
    assert.equal(labels.status, 200);
    assert.deepEqual(await json(labels), [{ label: "home", tasks: 1 }]);
    const moved = await post(`/api/tasks/${y.id}/move`, { after: x.id });
    assert.equal(moved.status, 200, await moved.clone().text());
    assert.equal((await json(moved)).id, y.id);
    assert.match(moved.headers.get("etag") ?? "", /^"\d+-\d+"$/);
    const order = await json(await browse(dave, "/api/tasks?sort=position"));
    assert.deepEqual(order.map((t: { title: string }) => t.title), ["x", "y"]);
    const changes = await browse(dave, "/api/tasks/changes?limit=1");
    assert.equal(changes.status, 200);
    const page = await json(changes);
    assert.equal(page.changes.length, 1);
    assert.equal(page.more, true);
    assert.equal(changes.headers.get("cache-control"), "no-store");

    calls.length = 0;
    const written = await post("/api/labels", { label: "home" });
    assert.equal(written.status, 405);
    assert.equal((await json(written)).code, "method_not_allowed");
    for (const path of ["/api/labels/home", "/api/labels/", "/api/labelsx"]) {
      const response = await browse(dave, path);
      assert.equal(response.status, 404, path);
      assert.equal((await json(response)).code, "not_found", path);
    }
    assert.equal(calls.length, 0, "nothing above reached the service");
  });

  test("events are passed on as they come (not buffered, not cut by the timeout); Last-Event-ID goes through and resumes", async () => {
    const { browse, calls } = setUp(SERVICE_URL, 300);
    const erin = await signUp("Erin");
    const create = async (title: string) =>
      json(await browse(erin, "/api/tasks", { method: "POST", body: JSON.stringify({ title }), headers: { "Content-Type": "application/json" } }));
    const before = await create("before");

    const open = async (headers: Record<string, string> = {}) => {
      const response = await browse(erin, "/api/tasks/events", { headers: { Accept: "text/event-stream", ...headers } });
      if (response.status !== 200) assert.fail(`${response.status} ${await response.text()}`); // a stream's text never ends
      assert.equal(response.headers.get("content-type"), "text/event-stream; charset=utf-8");
      assert.equal(response.headers.get("cache-control"), "no-cache, no-transform");
      return readEvents(response.body!)[Symbol.asyncIterator]();
    };
    const next = async (events: AsyncIterator<ServerSentEvent>) => {
      const { value, done } = await events.next();
      assert.ok(!done, "the stream ended");
      return { id: value.id!, change: JSON.parse(value.data!) };
    };

    const events = await open();
    const listed = await next(events);
    assert.deepEqual(listed.change, { op: "upsert", task: before });
    await sleep(600); // past the proxy's timeout: a stream is not cut by it
    const live = await create("live");
    assert.deepEqual((await next(events)).change, { op: "upsert", task: live }, "a change made while the stream is open");
    await events.return!(undefined);

    const resumed = await open({ "Last-Event-ID": listed.id });
    assert.deepEqual((await next(resumed)).change, { op: "upsert", task: live }, "the first event after that id");
    await resumed.return!(undefined);

    // The browser leaving (its request's signal) ends the call to the service.
    const leaving = new AbortController();
    let upstreamSignal: AbortSignal | undefined;
    const watched = createTasksProxy({
      serviceUrl: SERVICE_URL,
      authenticate: sessionIdentity,
      fetch: (input, init) => {
        upstreamSignal = init?.signal ?? undefined;
        return fetch(input, init);
      },
    });
    const request = new Request(`${NEXT_ORIGIN}/api/tasks/events`, { headers: { cookie: erin.cookie }, signal: leaving.signal });
    const followed = await watched(request);
    assert.equal(followed.status, 200);
    assert.equal(upstreamSignal?.aborted, false);
    leaving.abort();
    assert.equal(upstreamSignal?.aborted, true);
    await followed.body?.cancel().catch(() => undefined);

    const streams = calls.filter((c) => c.url.pathname === `/api/${erin.id}/tasks/events`);
    assert.deepEqual(streams.map((c) => c.headers.get("last-event-id")), [null, listed.id]);
    assert.ok(streams.every((c) => c.headers.get("cookie") === null && claims(bearerOf(c)).sub === erin.id));
  });
});
