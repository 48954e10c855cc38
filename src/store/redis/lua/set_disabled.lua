-- KEYS: user, user-sessions index, shard active sets' base name
-- ARGV: prefix, '1' to disable or '0' to enable
-- Reply: -1 when there is no such user, else the number of live sessions ended
-- Disabling ends every session in the same step, and create.lua refuses a disabled user, so a
-- login racing it cannot leave a session behind.
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if ARGV[2] == '1' then
  redis.call('HSET', KEYS[1], 'disabled', '1')
  return revoke_sessions(ARGV[1], KEYS[2], KEYS[3], '')
end
redis.call('HDEL', KEYS[1], 'disabled')
return 0
