-- KEYS: user-sessions index, shard active sets' base name
-- ARGV: prefix, session id to keep ('' for none)
-- Reply: number of live sessions deleted
return revoke_sessions(ARGV[1], KEYS[1], KEYS[2], ARGV[2])
