-- KEYS: session, shard active sets' base name
-- ARGV: prefix
-- Reply: the session id, or false when there was no session
local f = load_session(KEYS[1])
if not f then
  -- A key in another layout is no session, but it is this token's: remove it too.
  redis.call('DEL', KEYS[1])
  return false
end
drop(ARGV[1], KEYS[1], KEYS[2], f.s, f.u)
return f.s
