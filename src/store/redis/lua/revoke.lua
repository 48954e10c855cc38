-- KEYS: session, shard active sets' base name
-- ARGV: prefix
-- Reply: the session id, or nil when there was no session
local f = redis.call('HMGET', KEYS[1], 's', 'u')
if not f[1] then return false end
drop(ARGV[1], KEYS[1], KEYS[2], f[1], f[2])
return f[1]
