"use client";

import { useSyncExternalStore } from "react";

const never = () => () => {};

/** False in the server's HTML, true once React runs in the browser: forms keep their submit
 * button disabled until then, so an early click is not a native submit of the bare form. */
export function useHydrated(): boolean {
  return useSyncExternalStore(never, () => true, () => false);
}
