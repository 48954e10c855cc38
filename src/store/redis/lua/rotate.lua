-- KEYS: old session, new session, shard active sets' base name
-- ARGV: prefix, now, idle ms, new token hash
-- Reply: {0} missing | {1} expired | {2, session value}
local prefix, now = ARGV[1], tonumber(ARGV[2])
local f = load_session(KEYS[1])
if not f then
  -- A re-sent rotation (after a dropped connection) finds the session under its new,
  -- freshly drawn token: it already ran.
  local moved = redis.pcall('GET', KEYS[2])
  if type(moved) == 'string' and parse(moved) then return { 2, moved } end
  return { 0 }
end
if now >= deadline(f) then
  drop(prefix, KEYS[1], KEYS[3], f.s, f.u)
  return { 1 }
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR token collision')
end
redis.call('DEL', KEYS[1])
local value = slide(KEYS[2], KEYS[3], f, now, tonumber(ARGV[3]))
redis.call('HSET', prefix .. 'user-sessions:' .. f.u, f.s, ARGV[4])
return { 2, value }
