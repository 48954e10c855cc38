-- wrk: POST /v1/auth/login for users <USER_PREFIX>-0 .. <USER_PREFIX>-(USERS-1), round robin,
-- with PASSWORD (or a wrong one with WRONG_PASSWORD=1) and USER_AGENT. Counts answers by status.
--   USER_PREFIX=u USERS=8 PASSWORD=... WRK_JSON=out.json wrk -t2 -c8 -d15s -s loadtest/wrk/login.lua URL
local dir = (os.getenv("WRK_DIR") or "loadtest/wrk") .. "/"
local report = dofile(dir .. "report.lua")

local prefix = os.getenv("USER_PREFIX") or error("USER_PREFIX is not set")
local users = tonumber(os.getenv("USERS") or "8")
local password = os.getenv("PASSWORD") or error("PASSWORD is not set")
if os.getenv("WRONG_PASSWORD") == "1" then password = password .. "-wrong" end
local threads = tonumber(os.getenv("WRK_THREADS") or "1")
local headers = { ["Content-Type"] = "application/json" }
-- USER_AGENT, when set, is sent as the User-Agent (wrk sends none by default); sessiond
-- stores it with each new session.
local ua = os.getenv("USER_AGENT")
if ua and ua ~= "" then headers["User-Agent"] = ua end
local counter = 0

setup = report.setup
done = report.done

function init(args)
  report.init_counts()
end

function request()
  local i = (counter * threads + (id or 0)) % users
  counter = counter + 1
  local body = string.format('{"username":"%s-%d","password":"%s"}', prefix, i, password)
  return wrk.format("POST", "/v1/auth/login", headers, body)
end

function response(status, headers, body)
  report.count(status)
end
