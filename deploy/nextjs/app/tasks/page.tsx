import type { Metadata } from "next";
import { headers } from "next/headers";
import { redirect } from "next/navigation";

import { SignOutButton } from "@/components/sign-out-button";
import { TaskBoard } from "@/components/task-board";
import { auth } from "@/lib/auth";

export const metadata: Metadata = { title: "Your tasks · Tasks" };

export default async function TasksPage() {
  const session = await auth.api.getSession({ headers: await headers() });
  if (!session) redirect("/sign-in");
  return (
    <>
      <h1>Your tasks</h1>
      <p>
        Signed in as <strong>{session.user.email}</strong>. <SignOutButton />
      </p>
      <TaskBoard />
    </>
  );
}
