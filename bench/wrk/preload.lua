-- PUT key0..key{N-1} (100-byte values) once each, in order, then keep re-putting them.
-- Run with -t1 so one counter covers the whole key space.
local N = tonumber(os.getenv("PRELOAD") or "100000")
local body = string.rep("v", 100)
local i = 0
function request()
  local k = i % N
  i = i + 1
  return wrk.format("PUT", "/put?key=key" .. k, nil, body)
end
