-- wrk script: KeyValue Get/Set 90/10 on the URL's raw KeyValue route (bench scenario
-- http-kv-getset-memstore). Every 10th request on a connection is a PUT of a 64-byte value.
local n = 0
local value = string.rep("a", 64)

request = function()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("PUT", nil, { ["Content-Type"] = "application/octet-stream" }, value)
  end
  return wrk.format("GET")
end
