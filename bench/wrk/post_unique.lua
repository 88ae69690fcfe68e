-- wrk script: POST a JSON body with a unique Idempotency-Key per request; reports JSON on stdout.
-- Environment: KAQUAN_PATH, KAQUAN_TOKEN, KAQUAN_RUN, KAQUAN_BODY (a template; "{key}" becomes the key).
local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  n = 0
  path = os.getenv("KAQUAN_PATH")
  template = os.getenv("KAQUAN_BODY")
  headers = {
    ["Authorization"] = "Bearer " .. os.getenv("KAQUAN_TOKEN"),
    ["Content-Type"] = "application/json",
  }
  run = os.getenv("KAQUAN_RUN")
end

function request()
  n = n + 1
  local key = run .. "-" .. tid .. "-" .. n
  headers["Idempotency-Key"] = key
  local body = string.gsub(template, "{key}", key)
  return wrk.format("POST", path, headers, body)
end

function response(status, hdrs, body)
  statuses[tostring(status)] = (statuses[tostring(status)] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do merged[k] = (merged[k] or 0) + v end
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s": %d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'KAQUAN_RESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "socket_errors": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(95),
    latency:percentile(99), latency.max, e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
