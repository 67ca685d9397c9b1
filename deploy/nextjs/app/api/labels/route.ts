// GET /api/labels -> GET {TASKS_API_URL}/api/{user id}/labels: the signed-in user's labels with
// their task counts, through the same proxy as /api/tasks (lib/tasks-proxy-handler.ts).

import { tasksProxy } from "@/lib/tasks-proxy-handler";

export const GET = tasksProxy;
