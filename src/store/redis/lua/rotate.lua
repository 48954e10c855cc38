-- KEYS: old session, new session, shard active sets' base name
-- ARGV: prefix, now, idle ms, new token hash
-- Reply: {0} missing | {1} expired | {2, row, roles}
local prefix, now = ARGV[1], tonumber(ARGV[2])
local f, gone = load_live(prefix, KEYS[1], KEYS[3], now)
if not f then
  -- A re-sent rotation (after a dropped connection) finds the session under its new,
  -- freshly drawn token: it already ran.
  local moved = redis.call('HGETALL', KEYS[2])
  if #moved == 0 then return { gone } end
  f = fields_of(moved)
  local o = owner(prefix, f.u)
  return { 2, row(f, o), o[3] or '' }
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('ERR token collision')
end
redis.call('RENAME', KEYS[1], KEYS[2])
slide(KEYS[2], KEYS[3], f, now, tonumber(ARGV[3]))
redis.call('HSET', prefix .. 'user-sessions:' .. f.u, f.s, ARGV[4])
local o = owner(prefix, f.u)
return { 2, row(f, o), o[3] or '' }
