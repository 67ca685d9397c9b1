"use client";

import { useRouter } from "next/navigation";
import { useState } from "react";

import { authClient } from "@/lib/auth-client";

import { useHydrated } from "./use-hydrated";

/** Better Auth deletes the session (and with it the JWT the proxy held for it) and the cookie. */
export function SignOutButton() {
  const router = useRouter();
  const hydrated = useHydrated();
  const [pending, setPending] = useState(false);

  async function signOut() {
    setPending(true);
    await authClient.signOut();
    router.replace("/sign-in");
    router.refresh();
  }

  return (
    <button type="button" onClick={signOut} disabled={!hydrated || pending}>
      Sign out
    </button>
  );
}
