-- random GET over key0..key199999 with key0..key99999 preloaded: about half the keys are absent
-- (404), which shows what a read of an absent key costs next to a hit
local N = 200000
function init(args) math.randomseed(os.time() + math.floor(os.clock()*1e6) + math.random(1,1e6)) end
function request()
  return wrk.format("GET", "/get?key=key" .. math.random(0, N-1))
end
