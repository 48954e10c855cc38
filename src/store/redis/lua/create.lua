-- KEYS: session, user-sessions index, shard active sets' base name, user
-- ARGV: prefix, now, max per user, token hash, index ttl ms, session id, deadline,
--       the session value without its roles (ending with the separator)
-- Reply: the ids of the sessions the cap evicted, or 'refused' when the user no longer exists
-- or is disabled (nothing is written)
local prefix, now, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local sid, d = ARGV[6], tonumber(ARGV[7])
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- The client may re-send a script after a dropped connection: finding our own session
  -- means this create already ran.
  local mine = load_session(KEYS[1])
  if mine and mine.s == sid then return {} end
  return redis.error_reply('ERR token collision')
end
if d <= now then
  return redis.error_reply('ERR session already expired')
end
-- The roles are read here, in the same atomic step as the write, so a role change racing
-- this login either comes before (and is copied) or after (and rewrites this session too);
-- likewise a deletion or a disable racing it leaves no session behind.
local user = redis.call('HMGET', KEYS[4], 'roles', 'disabled')
local roles = user[1]
if not roles or user[2] == '1' then
  return 'refused'
end
-- The index may name sessions that expired by TTL: forget them, keep the live ones.
local live = {}
local index = redis.call('HGETALL', KEYS[2])
for n = 1, #index, 2 do
  local other, h = index[n], index[n + 1]
  local f = load_session(prefix .. 'sess:' .. h)
  if f then
    live[#live + 1] = { other, h, tonumber(f.c) }
  else
    redis.call('HDEL', KEYS[2], other)
    redis.call('ZREM', active_set(KEYS[3], other), other)
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
redis.call('SET', KEYS[1], ARGV[8] .. roles, 'PX', int(d - now))
redis.call('HSET', KEYS[2], sid, ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('PEXPIRE', KEYS[2], ARGV[5])
end
redis.call('ZADD', active_set(KEYS[3], sid), int(d), sid)
return evicted
