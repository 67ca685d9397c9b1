// /api/tasks and /api/tasks/* -> the tasks service, as the signed-in user (lib/tasks-proxy-handler.ts).
//
// An optional catch-all ([[...path]]) so that /api/tasks itself (list, create) is matched too;
// [...path] would only match /api/tasks/<something>. The path is read from request.url, so the
// handler uses only the Web Request/Response types and needs nothing from "next".
// GET /api/tasks/events is an event stream: the proxy passes it on as it arrives.

import { tasksProxy } from "@/lib/tasks-proxy-handler";

export const GET = tasksProxy;
export const POST = tasksProxy;
export const PUT = tasksProxy;
export const PATCH = tasksProxy;
export const DELETE = tasksProxy;
