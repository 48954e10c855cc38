-- KEYS: user, user-sessions index
-- ARGV: role, '1' to grant or '0' to remove, prefix
-- Reply: 1 when the user exists, else 0
local roles = redis.call('HGET', KEYS[1], 'roles')
if not roles then return 0 end
local out = {}
for role in string.gmatch(roles, '[^,]+') do
  if role ~= ARGV[1] then out[#out + 1] = role end
end
if ARGV[2] == '1' then out[#out + 1] = ARGV[1] end
redis.call('HSET', KEYS[1], 'roles', table.concat(out, ','))
-- Validations read the roles inside their script, where Redis client tracking does not see
-- the read (only declared keys are tracked). Re-set each session's expiry to the same instant
-- instead: that counts as a change to the session key, so every instance caching one of the
-- user's sessions is told to drop it and reads the new roles.
local index = redis.call('HGETALL', KEYS[2])
for n = 2, #index, 2 do
  local session = ARGV[3] .. 'sess:' .. index[n]
  local ttl = redis.call('PTTL', session)
  if ttl > 0 then redis.call('PEXPIRE', session, ttl) end
end
return 1
