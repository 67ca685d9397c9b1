import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { auth } from "@/lib/auth";

/** The start page: the tasks when signed in, the sign-in form otherwise. */
export default async function Home() {
  const session = await auth.api.getSession({ headers: await headers() });
  redirect(session ? "/tasks" : "/sign-in");
}
