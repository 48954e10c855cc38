-- KEYS: user
-- ARGV: role, '1' to grant or '0' to remove
-- Reply: 1 when the user exists, else 0
local roles = redis.call('HGET', KEYS[1], 'roles')
if not roles then return 0 end
local out = {}
for role in string.gmatch(roles, '[^,]+') do
  if role ~= ARGV[1] then out[#out + 1] = role end
end
if ARGV[2] == '1' then out[#out + 1] = ARGV[1] end
redis.call('HSET', KEYS[1], 'roles', table.concat(out, ','))
return 1
