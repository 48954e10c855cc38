-- KEYS: user, user-sessions index, shard active sets' base name, current session, new session
-- ARGV: prefix, now, idle ms, new token hash, the verified password hash, the new one
-- Reply: {0} the session ended | {1} the stored hash is not the verified one |
--        {2, session value, other sessions ended}
-- One step: the new hash is stored, every other session ends and the calling one moves to a
-- fresh token, so no request can see the new password next to an old session or token.
local prefix, now = ARGV[1], tonumber(ARGV[2])
local f = load_session(KEYS[4])
if not f then
  -- A re-sent change (after a dropped connection) finds the session under its new token and
  -- the new hash stored: it already ran.
  local moved = redis.pcall('GET', KEYS[5])
  if type(moved) == 'string' and parse(moved) and redis.call('HGET', KEYS[1], 'phc') == ARGV[6] then
    return { 2, moved, 0 }
  end
  return { 0 }
end
if now >= deadline(f) then
  drop(prefix, KEYS[4], KEYS[3], f.s, f.u)
  return { 0 }
end
if redis.call('HGET', KEYS[1], 'phc') ~= ARGV[5] then return { 1 } end
if redis.call('EXISTS', KEYS[5]) == 1 then
  return redis.error_reply('ERR token collision')
end
redis.call('HSET', KEYS[1], 'phc', ARGV[6])
local revoked = revoke_sessions(prefix, KEYS[2], KEYS[3], f.s)
redis.call('DEL', KEYS[4])
local value = slide(KEYS[5], KEYS[3], f, now, tonumber(ARGV[3]))
redis.call('HSET', KEYS[2], f.s, ARGV[4])
return { 2, value, revoked }
