-- wrk script for the tasks service: every request picks a user at random, sends that user's own
-- Bearer token and, for get/toggle, one of that user's task ids.
--
--   wrk -t2 -c16 -d5s -s bench/tasks.lua http://127.0.0.1:8000 -- <data file> <workload>
--
-- data file: one line per user, "<user_id> <token> <id>,<id>,..." (written by `python -m bench`)
-- workloads: healthz, list, get, create, toggle, mixed (60 % list, 20 % get, 10 % toggle,
-- 10 % create: 80 % reads, 20 % writes), warmup (list, get and toggle; creates nothing),
-- search (GET .../tasks?q=<term>: the data file's third field holds search terms, not ids)
-- done() prints one line "BENCH_RESULT {json}" with counts, errors and latency in microseconds.

local users = {}
local workload = "list"
local builder
local fixed_request
local created = 0
local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("thread_number", threads)
end

local function load_users(path)
   local file = io.open(path, "r")
   if not file then
      error("cannot open the data file " .. tostring(path))
   end
   for line in file:lines() do
      local uid, token, ids = line:match("^(%S+) (%S+) (%S*)$")
      if uid then
         local list = {}
         for id in ids:gmatch("%d+") do
            list[#list + 1] = id
         end
         local terms = {}
         for term in ids:gmatch("[^,]+") do
            terms[#terms + 1] = term
         end
         users[#users + 1] = {
            tasks = "/api/" .. uid .. "/tasks",
            auth = "Bearer " .. token,
            ids = list,
            terms = terms,
         }
      end
   end
   file:close()
   if #users == 0 then
      error("no users in the data file " .. path)
   end
end

local function pick()
   return users[math.random(#users)]
end

local function task_path(user)
   return user.tasks .. "/" .. user.ids[math.random(#user.ids)]
end

local function list(user)
   return wrk.format("GET", user.tasks, { ["Authorization"] = user.auth })
end

local function get(user)
   return wrk.format("GET", task_path(user), { ["Authorization"] = user.auth })
end

local function toggle(user)
   return wrk.format("PATCH", task_path(user) .. "/complete", { ["Authorization"] = user.auth })
end

local function create(user)
   created = created + 1
   local body = '{"title":"Bench task ' .. thread_number .. "-" .. created .. '"}'
   return wrk.format("POST", user.tasks, { ["Authorization"] = user.auth, ["Content-Type"] = "application/json" }, body)
end

local function search(user)
   return wrk.format("GET", user.tasks .. "?q=" .. user.terms[math.random(#user.terms)], { ["Authorization"] = user.auth })
end

local function mixed(user)
   local roll = math.random(100)
   if roll <= 60 then
      return list(user)
   elseif roll <= 80 then
      return get(user)
   elseif roll <= 90 then
      return toggle(user)
   end
   return create(user)
end

local function warmup(user)
   local roll = math.random(10)
   if roll <= 5 then
      return list(user)
   elseif roll <= 9 then
      return get(user)
   end
   return toggle(user)
end

local builders = {
   list = list, get = get, toggle = toggle, create = create, mixed = mixed, warmup = warmup, search = search,
}

function init(args)
   workload = args[2] or "list"
   math.randomseed(os.time() * 100 + (thread_number or 0))
   if workload == "healthz" then
      fixed_request = wrk.format("GET", "/healthz")
      return
   end
   builder = builders[workload]
   if not builder then
      error("unknown workload " .. tostring(workload))
   end
   load_users(args[1])
end

function request()
   if fixed_request then
      return fixed_request
   end
   return builder(pick())
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p99_9":%d,"mean":%.1f,"max":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.mean, latency.max))
end
