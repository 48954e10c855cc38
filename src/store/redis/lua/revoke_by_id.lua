-- KEYS: user-sessions index, shard active sets' base name
-- ARGV: prefix, session id
-- Reply: 1 when a live session was deleted, else 0
local h = redis.call('HGET', KEYS[1], ARGV[2])
if not h then return 0 end
redis.call('HDEL', KEYS[1], ARGV[2])
redis.call('ZREM', active_set(KEYS[2], ARGV[2]), ARGV[2])
return redis.call('DEL', ARGV[1] .. 'sess:' .. h)
