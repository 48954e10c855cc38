-- KEYS: session, user-sessions index, shard active sets' base name
-- ARGV: prefix, now, max per user, token hash, index ttl ms, field/value pairs...
local prefix, now, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local f = {}
for n = 6, #ARGV, 2 do f[ARGV[n]] = ARGV[n + 1] end
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- The client may re-send a script after a dropped connection: finding our own session
  -- means this create already ran.
  if redis.call('HGET', KEYS[1], 's') == f.s then return {} end
  return redis.error_reply('ERR token collision')
end
local d = deadline(f)
if d <= now then
  return redis.error_reply('ERR session already expired')
end
-- The index may name sessions that expired by TTL: forget them, keep the live ones.
local live = {}
local index = redis.call('HGETALL', KEYS[2])
for n = 1, #index, 2 do
  local sid, h = index[n], index[n + 1]
  local created = redis.call('HGET', prefix .. 'sess:' .. h, 'c')
  if created then
    live[#live + 1] = { sid, h, tonumber(created) }
  else
    redis.call('HDEL', KEYS[2], sid)
    redis.call('ZREM', active_set(KEYS[3], sid), sid)
  end
end
local evicted = {}
if max > 0 and #live >= max then
  table.sort(live, function(a, b)
    if a[3] == b[3] then return a[1] < b[1] end
    return a[3] < b[3]
  end)
  for n = 1, #live - max + 1 do
    local old = live[n]
    redis.call('DEL', prefix .. 'sess:' .. old[2])
    redis.call('HDEL', KEYS[2], old[1])
    redis.call('ZREM', active_set(KEYS[3], old[1]), old[1])
    evicted[#evicted + 1] = old[1]
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('PEXPIRE', KEYS[1], int(d - now))
redis.call('HSET', KEYS[2], f.s, ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('ZADD', active_set(KEYS[3], f.s), int(d), f.s)
return evicted
