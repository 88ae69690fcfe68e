-- wrk script: POST one redemption per request, each of a different code; reports JSON on stdout.
-- Environment: KAQUAN_PATH, KAQUAN_TOKEN, KAQUAN_CODES (a file of "number pin" lines), KAQUAN_THREADS (wrk -t).
-- Thread t of n takes lines t, t + n, t + 2n, ... When a thread has used all of its lines it sends its last
-- one again (answered "already redeemed": the run was longer than the file; the caller sees the non-2xx).
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  exhausted = 0
  n = 0
  path = os.getenv("KAQUAN_PATH")
  headers = {
    ["Authorization"] = "Bearer " .. os.getenv("KAQUAN_TOKEN"),
    ["Content-Type"] = "application/json",
  }
  local every = tonumber(os.getenv("KAQUAN_THREADS"))
  cards = {}
  local i = 0
  for line in io.lines(os.getenv("KAQUAN_CODES")) do
    if i % every == tid - 1 then
      table.insert(cards, line)
    end
    i = i + 1
  end
end

function request()
  n = n + 1
  local line = cards[n]
  if line == nil then
    line = cards[#cards]
    exhausted = exhausted + 1
  end
  local number, pin = string.match(line, "(%S+) (%S+)")
  local body = string.format(
    '{"code": "%s", "pin": "%s", "store": "S%02d", "terminal": "T%d"}', number, pin, n % 50, tid)
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  local short = 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do merged[k] = (merged[k] or 0) + v end
    short = short + t:get("exhausted")
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'KAQUAN_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "socket_errors": %d, "exhausted": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, short,
    table.concat(parts, ", ")))
end
