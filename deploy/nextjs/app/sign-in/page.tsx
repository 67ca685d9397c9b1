import type { Metadata } from "next";
import Link from "next/link";

import { AuthForm } from "@/components/auth-form";

export const metadata: Metadata = { title: "Sign in · Tasks" };

export default function SignInPage() {
  return (
    <>
      <h1>Sign in</h1>
      <AuthForm mode="sign-in" />
      <p>
        No account yet? <Link href="/sign-up">Sign up</Link>
      </p>
    </>
  );
}
