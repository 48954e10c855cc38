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
roles = table.concat(out, ',')
redis.call('HSET', KEYS[1], 'roles', roles)
-- Every session carries its owner's roles (validation reads nothing else): rewrite them, with
-- the expiry kept. Rewriting a session key also makes Redis tell every instance caching it to
-- drop it, so the new roles apply at the next request everywhere.
local index = redis.call('HGETALL', KEYS[2])
for n = 2, #index, 2 do
  local session = ARGV[3] .. 'sess:' .. index[n]
  local f = load_session(session)
  if f then
    f.roles = roles
    redis.call('SET', session, encode(f), 'KEEPTTL')
  end
end
return 1
