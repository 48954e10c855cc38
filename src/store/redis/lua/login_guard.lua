-- KEYS: the account's guard (a hash: one field per allowance)
-- ARGV: now, interval ms, tolerance ms, event ('check' | 'failure' | 'success'), field
--       ('*' for clients without a device token, 'd:<id>' for one device)
-- Reply: milliseconds until an attempt from that allowance may proceed (0: now)
-- A GCRA per field: the field holds its theoretical arrival time. The key expires when its
-- latest field has fully decayed.
local field = ARGV[5]
if ARGV[4] == 'success' then
  redis.call('HDEL', KEYS[1], field)
  return 0
end
local now, interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('HGET', KEYS[1], field) or '0')
if tat < now then tat = now end
if ARGV[4] == 'failure' then
  tat = tat + interval
  redis.call('HSET', KEYS[1], field, string.format('%d', tat))
  if redis.call('PTTL', KEYS[1]) < tat - now then
    redis.call('PEXPIRE', KEYS[1], string.format('%d', tat - now))
  end
end
local blocked = tat - now - tolerance
if blocked <= 0 then return 0 end
return string.format('%d', blocked)
