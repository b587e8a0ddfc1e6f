-- PUT key0..key{N-1} (VALUE_SIZE-byte values, default 100) once each, then stop.
-- Run with -t1 so one counter covers the whole key space; give -d a generous limit.
local N = tonumber(os.getenv("KEYS") or "1000000")
local body = string.rep("v", tonumber(os.getenv("VALUE_SIZE") or "100"))
local sent, done = 0, 0
function request()
  local k = sent % N
  sent = sent + 1
  return wrk.format("PUT", "/put?key=key" .. k, nil, body)
end
function response(status)
  done = done + 1
  if done >= N then wrk.thread:stop() end
end
