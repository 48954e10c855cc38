-- KEYS: user-sessions index, shard active zset
-- ARGV: prefix, now
-- Reply: one row per live session
local now = tonumber(ARGV[2])
local out = {}
local index = redis.call('HGETALL', KEYS[1])
for n = 1, #index, 2 do
  local sid, h = index[n], index[n + 1]
  local raw = redis.call('HGETALL', ARGV[1] .. 'sess:' .. h)
  if #raw == 0 then
    redis.call('HDEL', KEYS[1], sid)
    redis.call('ZREM', KEYS[2], sid)
  else
    local f = fields_of(raw)
    if now < deadline(f) then out[#out + 1] = row(f) end
  end
end
return out
