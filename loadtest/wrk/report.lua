-- Shared by the wrk scripts of scripts/bench.sh: writes wrk's results as one JSON object to
-- the file named by $WRK_JSON (nothing when unset), and per-status counts when the calling
-- script counts them (globals s2xx, s401, s429, s503, sother in each thread).

local report = {}
local threads = {}

function report.setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local function statuses()
  local names = { "s2xx", "s401", "s429", "s503", "sother" }
  local totals = {}
  local any = false
  for _, name in ipairs(names) do totals[name] = 0 end
  for _, thread in ipairs(threads) do
    for _, name in ipairs(names) do
      local v = thread:get(name)
      if v then
        totals[name] = totals[name] + v
        any = true
      end
    end
  end
  if not any then return "null" end
  return string.format('{"2xx":%d,"401":%d,"429":%d,"503":%d,"other":%d}',
    totals.s2xx, totals.s401, totals.s429, totals.s503, totals.sother)
end

function report.done(summary, latency, requests)
  local path = os.getenv("WRK_JSON")
  if not path or path == "" then return end
  local e = summary.errors
  local seconds = summary.duration / 1e6
  local json = string.format(
    '{"requests":%d,"duration_s":%.3f,"rps":%.2f,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_ms":{"min":%.3f,"mean":%.3f,"stdev":%.3f,"p50":%.3f,"p90":%.3f,"p99":%.3f,"p99_9":%.3f,"max":%.3f},' ..
    '"statuses":%s}\n',
    summary.requests, seconds, summary.requests / seconds, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min / 1000, latency.mean / 1000, latency.stdev / 1000,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000,
    statuses())
  local file = assert(io.open(path, "w"))
  file:write(json)
  file:close()
end

-- Count a response by status (call from response()).
function report.count(status)
  if status >= 200 and status < 300 then s2xx = s2xx + 1
  elseif status == 401 then s401 = s401 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
end

function report.init_counts()
  s2xx, s401, s429, s503, sother = 0, 0, 0, 0, 0
end

return report
