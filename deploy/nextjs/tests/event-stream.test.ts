// lib/event-stream.ts on its own: the text/event-stream rules, and resuming with the last id.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { followEvents, readEvents, type ServerSentEvent } from "../lib/event-stream";

/** A body that delivers `chunks` one read at a time, as a network would split them. */
function body(chunks: string[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next === undefined) controller.close();
      else controller.enqueue(encoder.encode(next));
    },
  });
}

async function all(stream: ReadableStream<Uint8Array>): Promise<ServerSentEvent[]> {
  const events: ServerSentEvent[] = [];
  for await (const event of readEvents(stream)) events.push(event);
  return events;
}

describe("readEvents", () => {
  test("events split anywhere across reads, CRLF and CR line ends, comments, multi-line data", async () => {
    const text = ": keep-alive\n\nid: t1\ndata: {\"a\":1}\n\nid:t2\r\ndata: one\r\ndata:two\r\n\r\nevent: x\rdata: é\r\r";
    for (const size of [1, 2, 3, 7, text.length]) {
      const chunks = text.match(new RegExp(`[\\s\\S]{1,${size}}`, "g"))!;
      assert.deepEqual(
        await all(body(chunks)),
        [
          { id: "t1", event: "message", data: '{"a":1}' },
          { id: "t2", event: "message", data: "one\ntwo" },
          { id: "t2", event: "x", data: "é" },
        ],
        `chunks of ${size}`,
      );
    }
  });

  test("a bare id line is a block without data; an unfinished block at the end is dropped", async () => {
    assert.deepEqual(await all(body(["data: a\nid: 1\n\n", "id: 2\n\n", "data: cut"])), [
      { id: "1", event: "message", data: "a" },
      { id: "2", event: "message", data: null },
    ]);
  });
});

describe("followEvents", () => {
  test("reconnects after the stream ends or breaks, sending the last id seen (a bare id included)", async () => {
    const asked: (string | undefined)[] = [];
    const seen: string[] = [];
    const stop = new AbortController();
    const streams: (() => ReadableStream<Uint8Array>)[] = [
      () => body(["id: 1\ndata: a\n\n", "id: 2\ndata: b\n\n"]), // ends normally
      () => body(["id: 3\n\n"]), // the service's last block on shutdown: a fresh id, no event
      () => {
        let reads = 0;
        return new ReadableStream({
          pull(controller) {
            if (reads++ === 0) controller.enqueue(new TextEncoder().encode("id: 4\ndata: c\n\n"));
            else controller.error(new TypeError("terminated")); // the connection drops
          },
        });
      },
      () => body(["id: 5\ndata: d\n\n"]),
    ];
    await followEvents({
      signal: stop.signal,
      retryMs: 1,
      async open(lastEventId) {
        asked.push(lastEventId);
        const next = streams.shift();
        if (!next) {
          stop.abort();
          throw new TypeError("no more");
        }
        return new Response(next(), { headers: { "Content-Type": "text/event-stream" } });
      },
      onEvent: (event) => seen.push(`${event.id}:${event.data}`),
    });
    assert.deepEqual(seen, ["1:a", "2:b", "4:c", "5:d"]);
    assert.deepEqual(asked, [undefined, "2", "3", "4", "5"]);
  });

  test("a refusal without Retry-After ends the following with that error", async () => {
    const refused = new Error("410 sync_token_expired");
    const following = followEvents({
      signal: new AbortController().signal,
      open: async () => {
        throw refused;
      },
      onEvent: () => assert.fail("no event"),
    });
    await assert.rejects(following, (error) => error === refused);
  });
});
