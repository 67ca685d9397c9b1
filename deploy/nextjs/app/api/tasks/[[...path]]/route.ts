// /api/tasks and /api/tasks/* -> the tasks service, as the signed-in user (lib/tasks-proxy.ts).
//
// An optional catch-all ([[...path]]) so that /api/tasks itself (list, create) is matched too;
// [...path] would only match /api/tasks/<something>. The path is read from request.url, so the
// handler uses only the Web Request/Response types and needs nothing from "next".
// Runs on the Node.js runtime (the default): Better Auth here talks to PostgreSQL through pg.

import { auth } from "@/lib/auth";
import { createTasksProxy } from "@/lib/tasks-proxy";

const proxy = createTasksProxy({
  serviceUrl: process.env.TASKS_API_URL ?? "http://127.0.0.1:8000",
  async authenticate(headers) {
    // The session from the browser's cookie, then a JWT for that user: the same thing
    // GET /api/auth/token answers, without an HTTP round trip. (One call can do both:
    // getSession({ headers, returnHeaders: true }) carries the JWT in its `set-auth-jwt` header.)
    const session = await auth.api.getSession({ headers });
    if (!session) return null;
    const { token } = await auth.api.getToken({ headers });
    return { userId: session.user.id, token };
  },
});

export const GET = proxy;
export const POST = proxy;
export const PUT = proxy;
export const PATCH = proxy;
export const DELETE = proxy;
