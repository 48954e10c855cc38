-- KEYS: session, shard active sets' base name
-- ARGV: now, min slide interval ms, idle ms
-- Reply: the slid session value, or false when there is nothing to slide (the session ended
-- meanwhile, or another request already recorded a use within the interval)
-- Validations read a session with a plain GET; only when a slide is due does one run this, and
-- it decides again on what Redis holds now, so it never recreates a session that a logout
-- deleted after the read.
local now = tonumber(ARGV[1])
local f = load_session(KEYS[1])
if not f or now >= deadline(f) then return false end
if now - at(f, 'l') < tonumber(ARGV[2]) then return false end
return slide(KEYS[1], KEYS[2], f, now, tonumber(ARGV[3]))
