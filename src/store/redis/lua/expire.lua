-- KEYS: session, shard active sets' base name
-- ARGV: prefix, now
-- Reply: 1 when the session was past its deadline at `now` and is now removed, else 0
-- A validation that finds a session past its deadline by this instance's clock (Redis's own
-- expiry may lag by its clock) removes it with its bookkeeping, unless it was slid meanwhile.
local f = load_session(KEYS[1])
if not f or tonumber(ARGV[2]) < deadline(f) then return 0 end
drop(ARGV[1], KEYS[1], KEYS[2], f.s, f.u)
return 1
