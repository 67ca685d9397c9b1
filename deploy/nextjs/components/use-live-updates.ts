"use client";

import { useEffect, useRef, useState } from "react";

import { TasksApiError } from "@/lib/tasks-api";

import { proxyTasks } from "./tasks-client";

export type LiveState = "connecting" | "live" | "off";

// Changes come in bursts (a stream's first listing, a respacing move): one reload per burst.
const SETTLE_MS = 150;

/** Follows the user's change stream while mounted and calls `onChange` (at most once per burst)
 * when any task changed, here or in another tab or device. Returns the stream's state. */
export function useLiveUpdates(onChange: () => void): LiveState {
  const [state, setState] = useState<LiveState>("connecting");
  const latest = useRef(onChange);
  useEffect(() => {
    latest.current = onChange;
  });

  useEffect(() => {
    const stop = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const changed = () => {
      clearTimeout(timer);
      timer = setTimeout(() => latest.current(), SETTLE_MS);
    };
    async function run() {
      for (;;) {
        try {
          await proxyTasks.follow({
            signal: stop.signal,
            onOpen: () => setState("live"),
            onClose: () => setState("connecting"),
            onChange: changed,
          });
          return;
        } catch (error) {
          if (stop.signal.aborted) return;
          // The stream's token outlived the service's retention: start afresh, from a full list.
          if (error instanceof TasksApiError && error.status === 410) {
            changed();
            continue;
          }
          setState("off"); // signed out, or refused: the list still works, without live updates
          return;
        }
      }
    }
    void run();
    return () => {
      stop.abort();
      clearTimeout(timer);
    };
  }, []);
  return state;
}
