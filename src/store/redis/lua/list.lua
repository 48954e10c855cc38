-- KEYS: user-sessions index, shard active sets' base name
-- ARGV: prefix, now
-- Reply: the value of each live session
local now = tonumber(ARGV[2])
local out = {}
local index = redis.call('HGETALL', KEYS[1])
for n = 1, #index, 2 do
  local sid, h = index[n], index[n + 1]
  local raw = redis.pcall('GET', ARGV[1] .. 'sess:' .. h)
  local f = type(raw) == 'string' and parse(raw)
  if not f then
    -- Gone (or written by an older build): forget it.
    redis.call('HDEL', KEYS[1], sid)
    redis.call('ZREM', active_set(KEYS[2], sid), sid)
  elseif now < deadline(f) then
    out[#out + 1] = raw
  end
end
return out
