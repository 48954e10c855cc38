-- KEYS: user-sessions index, shard active sets' base name
-- ARGV: prefix, now
-- Reply: one row per live session
local now = tonumber(ARGV[2])
local out, o = {}, nil
local index = redis.call('HGETALL', KEYS[1])
for n = 1, #index, 2 do
  local sid, h = index[n], index[n + 1]
  local f = fields_of(redis.call('HGETALL', ARGV[1] .. 'sess:' .. h))
  if not usable(f) then
    -- Gone (or written by an older build): forget it.
    redis.call('HDEL', KEYS[1], sid)
    redis.call('ZREM', active_set(KEYS[2], sid), sid)
  elseif now < deadline(f) then
    o = o or owner(ARGV[1], f.u)
    out[#out + 1] = row(f, o)
  end
end
return out
