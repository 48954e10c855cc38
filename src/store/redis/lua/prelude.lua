-- Shared helpers, prepended to every session script.
-- Every key a script touches shares the caller's shard hash tag ({xyz}); PREFIX is
-- "sessiond:{xyz}:" so the script can name the shard's other keys.

local function fields_of(raw)
  local f = {}
  for n = 1, #raw, 2 do f[raw[n]] = raw[n + 1] end
  return f
end

local function int(x)
  return string.format('%d', x)
end

-- A session's times: 'c' (created) is absolute, in ms since the Unix epoch; 'l' (last seen),
-- 'i' (idle deadline) and 'e' (absolute deadline) are ms after 'c'. Offsets below 2^31 (24 days)
-- take 4 bytes in Redis's compact encoding instead of 8.
local function at(f, name)
  return tonumber(f.c) + tonumber(f[name])
end

local function deadline(f)
  return tonumber(f.c) + math.min(tonumber(f.i), tonumber(f.e))
end

-- The shard's live sessions are counted in ACTIVE_SETS sorted sets (<base>:0 …), chosen by the
-- session id's first byte: each set stays small enough for Redis's compact listpack encoding
-- (zset-max-listpack-entries, 128 by default) up to ~ACTIVE_SETS x 128 x 1024 sessions, at a
-- third of the memory per entry of the skiplist encoding bigger sets switch to.
local ACTIVE_SETS = 4
local function active_set(base, sid)
  return base .. ':' .. (string.byte(sid, 1) % ACTIVE_SETS)
end

-- Remove a session and its bookkeeping (index entry, active-count entry).
local function drop(prefix, session_key, active_key, sid, user)
  redis.call('DEL', session_key)
  redis.call('ZREM', active_set(active_key, sid), sid)
  redis.call('HDEL', prefix .. 'user-sessions:' .. user, sid)
end

-- Whether a session hash has every field this format writes. One written by an older build
-- with another layout is not a session any more: its holder logs in again (a 401, not an error).
local function usable(f)
  return f.s and f.u and f.c and f.l and f.i and f.e
end

-- A live session's fields, or nil and a reply code: 0 missing, 1 expired (and now deleted).
local function load_live(prefix, session_key, active_key, now)
  local raw = redis.call('HGETALL', session_key)
  if #raw == 0 then return nil, 0 end
  local f = fields_of(raw)
  if not usable(f) then
    redis.call('DEL', session_key)
    return nil, 0
  end
  if now >= deadline(f) then
    drop(prefix, session_key, active_key, f.s, f.u)
    return nil, 1
  end
  return f
end

-- The owner's public id, spelled username and roles: kept once in the user hash, not copied
-- into every session (each copy would cost Redis memory per session).
local function owner(prefix, user)
  return redis.call('HMGET', prefix .. 'user:' .. user, 'id', 'name', 'roles')
end

-- The reply shape shared by touch/rotate/list: positional session fields, times absolute.
local function row(f, o)
  return { f.s, o[1] or '', o[2] or '', f.u, f.c, int(at(f, 'l')), int(at(f, 'i')), int(at(f, 'e')),
    f.ip or '', f.d or '' }
end

-- Slide the idle deadline to now + idle (capped by the absolute deadline).
local function slide(session_key, active_key, f, now, idle)
  local c = tonumber(f.c)
  local ni = math.min(now + idle, at(f, 'e'))
  f.l = int(now - c)
  f.i = int(ni - c)
  redis.call('HSET', session_key, 'l', f.l, 'i', f.i)
  redis.call('PEXPIRE', session_key, int(ni - now))
  redis.call('ZADD', active_set(active_key, f.s), 'XX', int(ni), f.s)
end
