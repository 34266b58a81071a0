-- wrk script for the uniinfer benchmark: POST a fixed JSON body, print a JSON summary.
--
-- Environment:
--   BENCH_BODY_FILE  path of the request body (JSON)
--   BENCH_AUTH       optional bearer token sent as "Authorization: Bearer <token>"
--
-- done() prints one line "BENCH_JSON {...}" with counts and latency percentiles
-- in microseconds, which bench/run.py parses.

local path = os.getenv("BENCH_BODY_FILE")
local f = assert(io.open(path, "rb"), "cannot open BENCH_BODY_FILE")
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. auth
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max))
end
