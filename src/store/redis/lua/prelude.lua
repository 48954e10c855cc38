-- Shared helpers, prepended to every session script.
-- Every key a script touches shares the caller's shard hash tag ({xyz}); PREFIX is
-- "sessiond:{xyz}:" so the script can name the shard's other keys.

local function int(x)
  return string.format('%d', x)
end

-- A session is one string value (see store/redis/record.rs): fields joined by 0x1f, in this
-- order, the layout tag first and the roles last. Layout '3' (a backend session with data)
-- has the data before the roles; '2' has none.
local SEP = '\31'
local LAYOUTS = {
  ['2'] = { 'v', 's', 'u', 'c', 'l', 'i', 'e', 'ip', 'd', 'uid', 'name', 'roles' },
  ['3'] = { 'v', 's', 'u', 'c', 'l', 'i', 'e', 'ip', 'd', 'uid', 'name', 'data', 'roles' },
}

-- The named fields of a value, or nil when it is not a session in a known layout.
local function parse(raw)
  local fields = LAYOUTS[string.sub(raw, 1, 1)]
  if not fields or string.sub(raw, 2, 2) ~= SEP then return nil end
  local f, n, start = {}, 1, 1
  while true do
    local name = fields[n]
    if not name then return nil end
    local at = string.find(raw, SEP, start, true)
    if not at then
      f[name] = string.sub(raw, start)
      break
    end
    f[name] = string.sub(raw, start, at - 1)
    n, start = n + 1, at + 1
  end
  if n ~= #fields then return nil end
  return f
end

local function encode(f)
  local out = {}
  for n, name in ipairs(LAYOUTS[f.v]) do out[n] = f[name] or '' end
  return table.concat(out, SEP)
end

-- The session stored under `key`: its fields, or nil when there is none in this layout (no
-- key, a value of another layout, or a key of another type such as an older build's hash).
local function load_session(key)
  local raw = redis.pcall('GET', key)
  if type(raw) ~= 'string' then return nil end
  return parse(raw)
end

-- A session's times: 'c' (created) is absolute, in ms since the Unix epoch; 'l' (last seen),
-- 'i' (idle deadline) and 'e' (absolute deadline) are ms after 'c'.
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

-- Record a use at `now`: the idle deadline moves to now + idle (capped by the absolute one),
-- the key's expiry and the active-count score with it.
local function slide(session_key, active_key, f, now, idle)
  local c = tonumber(f.c)
  local ni = math.min(now + idle, at(f, 'e'))
  f.l = int(now - c)
  f.i = int(ni - c)
  local value = encode(f)
  redis.call('SET', session_key, value, 'PX', int(ni - now))
  redis.call('ZADD', active_set(active_key, f.s), 'XX', int(ni), f.s)
  return value
end

-- End every session in the user's index except `keep` (a session id, or '' for none), with
-- their bookkeeping. Returns how many session keys were deleted.
local function revoke_sessions(prefix, index_key, active_key, keep)
  local index = redis.call('HGETALL', index_key)
  local revoked = 0
  for n = 1, #index, 2 do
    local sid, h = index[n], index[n + 1]
    if sid ~= keep then
      revoked = revoked + redis.call('DEL', prefix .. 'sess:' .. h)
      redis.call('HDEL', index_key, sid)
      redis.call('ZREM', active_set(active_key, sid), sid)
    end
  end
  return revoked
end
