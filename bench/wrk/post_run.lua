-- wrk script of bench/service_bench.py: POST a run and classify every response.
--
-- Environment (read by the main and every thread state):
--   GF_BODY      JSON body of each POST (default "{}")
--   GF_RATE      if set, the offered rate in requests/second over all threads: each thread
--                hands out send times GF_THREADS / GF_RATE seconds apart (through delay()) to
--                whichever of its connections is free, so the rate does not drop as latency
--                grows, as long as a connection is free; the bench reports the achieved rate
--   GF_THREADS   wrk's -t, for GF_RATE
--
-- Each response is counted under "<http status> <run status>", the run status being the first
-- "status" field of the body (RunPublic puts the run's own status before its nodes), e.g.
-- "200 succeeded" or "202 queued" or "429 -". done() prints one line for the bench to parse:
--   GFRESULT {"requests": ..., "duration_us": ..., "p50_us": ..., "codes": {...}, ...}

wrk.method = "POST"
wrk.body = os.getenv("GF_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"

local rate = tonumber(os.getenv("GF_RATE") or "")
if rate then
  -- Defined only when asked for: wrk schedules a timer per request once delay() exists.
  local ffi = require("ffi")
  ffi.cdef([[
    typedef struct { long tv_sec; long tv_nsec; } gf_timespec;
    int clock_gettime(int clock_id, gf_timespec *tp);
  ]])
  local ts = ffi.new("gf_timespec")
  local CLOCK_MONOTONIC = 1
  local interval_ms = 1000 * tonumber(os.getenv("GF_THREADS") or "1") / rate
  local next_ms = nil

  local function now_ms()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end

  -- Called before every request, on the thread's one Lua state: the next free send time.
  -- When every connection was busy past its slot, the schedule restarts from now (no burst).
  function delay()
    local now = now_ms()
    if next_ms == nil or next_ms < now then
      next_ms = now
    end
    local wait = next_ms - now
    next_ms = next_ms + interval_ms
    return wait
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  codes = {}
end

function response(status, headers, body)
  local run_status = body and body:match('"status":"(%a+)"') or "-"
  local key = status .. " " .. run_status
  codes[key] = (codes[key] or 0) + 1
end

local function percentile(latency, p)
  return latency:percentile(p)
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local thread_codes = thread:get("codes") or {}
    for key, count in pairs(thread_codes) do
      total[key] = (total[key] or 0) + count
    end
  end
  local parts = {}
  for key, count in pairs(total) do
    table.insert(parts, string.format('"%s": %d', key, count))
  end
  local e = summary.errors
  io.write(string.format(
    'GFRESULT {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, '
      .. '"status": %d, "timeout": %d, "mean_us": %.1f, "max_us": %d, "p50_us": %d, '
      .. '"p95_us": %d, "p99_us": %d, "codes": {%s}}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, percentile(latency, 50), percentile(latency, 95),
    percentile(latency, 99), table.concat(parts, ", ")
  ))
end
