// Server-sent events read over fetch, as EventSource would read them, but with headers of our
// own: EventSource cannot send `Authorization`, and it gives no say over when to reconnect.
//
// `readEvents` parses a text/event-stream body (the WHATWG rules: LF, CRLF or CR line ends,
// `:` comments, one optional space after the colon, `data` lines joined by "\n", an `id` kept
// even by a block without data). `followEvents` reads a stream, and when it ends or breaks
// reopens it with the last id it saw, as `Last-Event-ID`, so no event is lost across the gap.

/** One dispatched block. `data` is null for a block without data (a bare `id:` line). */
export interface ServerSentEvent {
  id: string | undefined;
  event: string;
  data: string | null;
}

export async function* readEvents(body: ReadableStream<Uint8Array>): AsyncGenerator<ServerSentEvent> {
  const decoder = new TextDecoder();
  const reader = body.getReader();
  let buffer = "";
  let id: string | undefined;
  let event = "";
  let data: string[] = [];
  let sawField = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      // A CR at the very end may be the first half of a CRLF: keep it until more arrives.
      const lines = buffer.split(/\r\n|\n|\r(?!$)/);
      buffer = done ? "" : (lines.pop() ?? "");
      for (const line of lines) {
        if (line === "" || line === "\r") {
          if (sawField) yield { id, event: event || "message", data: data.length ? data.join("\n") : null };
          event = "";
          data = [];
          sawField = false;
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: heartbeats
        const colon = line.indexOf(":");
        const name = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") data.push(value);
        else if (name === "event") event = value;
        else if (name === "id" && !value.includes("\0")) id = value;
        else continue;
        sawField = true;
      }
      if (done) return; // an unfinished block at the end is dropped, as EventSource drops it
    }
  } finally {
    reader.releaseLock();
    await body.cancel().catch(() => undefined);
  }
}

export interface FollowOptions {
  /** Opens the stream; `lastEventId` is the id to resume after (send it as Last-Event-ID).
   * Throwing ends the following, except for a TypeError (the network): that is retried. */
  open: (lastEventId: string | undefined, signal: AbortSignal) => Promise<Response>;
  /** Each event with data, in order. */
  onEvent: (event: ServerSentEvent) => void;
  /** Called with each (re)connection once its answer is 200. */
  onOpen?: () => void;
  /** Called when a stream ended or broke, or could not be opened, before reconnecting. */
  onClose?: () => void;
  /** Stops the following: the current stream is cancelled and the promise resolves. */
  signal: AbortSignal;
  /** Where to start; later the last id seen wins. */
  lastEventId?: string;
  /** Milliseconds before reconnecting after a stream ended or the network failed (default 1000). */
  retryMs?: number;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
  });

/** Reads the stream and reconnects with the last id seen until `signal` aborts. Resolves then;
 * rejects with what `open` threw (a refusal such as 410 sync_token_expired, 403). */
export async function followEvents(options: FollowOptions): Promise<void> {
  const { signal } = options;
  const retryMs = options.retryMs ?? 1000;
  let lastEventId = options.lastEventId;
  while (!signal.aborted) {
    try {
      const response = await options.open(lastEventId, signal);
      if (!response.body) throw new TypeError("the event stream has no body");
      options.onOpen?.();
      for await (const event of readEvents(response.body)) {
        if (event.id !== undefined) lastEventId = event.id;
        if (event.data !== null) options.onEvent(event);
        if (signal.aborted) break;
      }
    } catch (error) {
      if (signal.aborted) return;
      // A network failure (fetch's TypeError) or a stream cut mid-way: reconnect. A refusal that
      // names a Retry-After (503 too_many_streams): reconnect then. Anything else is the caller's.
      const retryAfter = (error as { retryAfterSeconds?: unknown } | null)?.retryAfterSeconds;
      if (typeof retryAfter === "number") {
        options.onClose?.();
        await sleep(retryAfter * 1000, signal);
        continue;
      }
      if (!(error instanceof TypeError)) throw error;
    }
    if (signal.aborted) return;
    options.onClose?.();
    await sleep(retryMs, signal);
  }
}
