"use client";

import { useRouter } from "next/navigation";
import { type FormEvent, useState } from "react";

import { authClient } from "@/lib/auth-client";

import { useHydrated } from "./use-hydrated";

/** Sign up (name, email, password) or sign in (email, password) with Better Auth's client, then
 * on to the tasks. Better Auth sets the session cookie; nothing else is kept in the browser. */
export function AuthForm({ mode }: { mode: "sign-in" | "sign-up" }) {
  const router = useRouter();
  const hydrated = useHydrated();
  const [error, setError] = useState<string | null>(null);
  const [pending, setPending] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get("email") ?? "");
    const password = String(form.get("password") ?? "");
    setPending(true);
    setError(null);
    const { error } =
      mode === "sign-up"
        ? await authClient.signUp.email({ name: String(form.get("name") ?? ""), email, password })
        : await authClient.signIn.email({ email, password });
    if (error) {
      setPending(false);
      setError(error.message ?? error.statusText ?? "Something went wrong; try again.");
      return;
    }
    router.replace("/tasks");
    router.refresh();
  }

  const label = mode === "sign-up" ? "Sign up" : "Sign in";
  return (
    <form onSubmit={submit} aria-label={label}>
      {mode === "sign-up" && (
        <label>
          Name
          <input type="text" name="name" autoComplete="name" required maxLength={100} />
        </label>
      )}
      <label>
        Email
        <input type="email" name="email" autoComplete="email" required />
      </label>
      <label>
        Password
        <input
          type="password"
          name="password"
          autoComplete={mode === "sign-up" ? "new-password" : "current-password"}
          required
          minLength={8}
        />
      </label>
      {error && <p role="alert">{error}</p>}
      <button type="submit" disabled={!hydrated || pending}>
        {label}
      </button>
    </form>
  );
}
