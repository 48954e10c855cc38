-- KEYS: the account's guard key
-- ARGV: now, interval ms, tolerance ms, event ('check' | 'failure' | 'success')
-- Reply: milliseconds until an attempt may proceed (0: now)
if ARGV[4] == 'success' then
  redis.call('DEL', KEYS[1])
  return 0
end
local now, interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
if ARGV[4] == 'failure' then
  tat = tat + interval
  redis.call('SET', KEYS[1], string.format('%d', tat), 'PX', string.format('%d', tat - now))
end
local blocked = tat - now - tolerance
if blocked <= 0 then return 0 end
return string.format('%d', blocked)
