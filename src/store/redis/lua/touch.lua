-- KEYS: session, shard active sets' base name
-- ARGV: prefix, now, min slide interval ms, idle ms
-- Reply: {0} missing | {1} expired | {2, row, roles}
local prefix, now = ARGV[1], tonumber(ARGV[2])
local f, gone = load_live(prefix, KEYS[1], KEYS[2], now)
if not f then return { gone } end
if now - at(f, 'l') >= tonumber(ARGV[3]) then
  slide(KEYS[1], KEYS[2], f, now, tonumber(ARGV[4]))
end
local o = owner(prefix, f.u)
return { 2, row(f, o), o[3] or '' }
