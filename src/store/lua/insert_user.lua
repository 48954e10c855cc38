-- KEYS: user
-- ARGV: field/value pairs
-- Reply: 1 when created, 0 when the username is taken
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
