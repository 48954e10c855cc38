-- KEYS: user-sessions index, shard active sets' base name
-- ARGV: prefix, session id to keep ('' for none)
-- Reply: number of live sessions deleted
local index = redis.call('HGETALL', KEYS[1])
local revoked = 0
for n = 1, #index, 2 do
  local sid, h = index[n], index[n + 1]
  if sid ~= ARGV[2] then
    revoked = revoked + redis.call('DEL', ARGV[1] .. 'sess:' .. h)
    redis.call('HDEL', KEYS[1], sid)
    redis.call('ZREM', active_set(KEYS[2], sid), sid)
  end
end
return revoked
