-- KEYS: user
-- ARGV: field/value pairs
-- Reply: 1 when created, 0 when the username is taken
if redis.call('EXISTS', KEYS[1]) == 1 then
  -- A re-sent insert (after a dropped connection) finds its own random id: it already ran.
  if ARGV[1] == 'id' and redis.call('HGET', KEYS[1], 'id') == ARGV[2] then return 1 end
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
