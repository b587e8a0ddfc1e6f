-- etcd v3 JSON gateway, random keys key0..key{N-1} (base64 in JSON bodies):
--   ETCD_OP=put (default): PUT of a 100-byte value;  ETCD_OP=range: GET of one key
local OP = os.getenv("ETCD_OP") or "put"
local N = 100000
local b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function b64(data)
  return ((data:gsub('.', function(x)
    local r, b = '', x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and '1' or '0') end
    return r
  end) .. '0000'):gsub('%d%d%d?%d?%d?%d?', function(x)
    if #x < 6 then return '' end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == '1' and 2 ^ (6 - i) or 0) end
    return b64chars:sub(c + 1, c + 1)
  end) .. ({ '', '==', '=' })[#data % 3 + 1])
end
local value = b64(string.rep("v", 100))
local keys = {}
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6) + math.random(1, 1e6))
  for i = 0, 999 do keys[i] = b64("key" .. math.random(0, N - 1)) end
end
local i = 0
function request()
  i = (i + 1) % 1000
  if OP == "range" then
    return wrk.format("POST", "/v3/kv/range", { ["Content-Type"] = "application/json" }, '{"key":"' .. keys[i] .. '"}')
  end
  return wrk.format("POST", "/v3/kv/put", { ["Content-Type"] = "application/json" },
    '{"key":"' .. keys[i] .. '","value":"' .. value .. '"}')
end
