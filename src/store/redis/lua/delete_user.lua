-- KEYS: user, user-sessions index, shard active sets' base name, login guard
-- ARGV: prefix
-- Reply: -1 when there is no such user, else the number of live sessions ended
-- Everything of the user goes in one step: the sessions and their bookkeeping, the index,
-- the guard and the account itself, so a login racing it finds no user to open a session for.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local revoked = revoke_sessions(ARGV[1], KEYS[2], KEYS[3], '')
redis.call('DEL', KEYS[2], KEYS[4], KEYS[1])
return revoked
