-- wrk: POST /v1/auth/register for <USER_PREFIX>-0 .. <USER_PREFIX>-(USERS-1), round robin
-- (WRK_THREADS should be wrk's -t): run it long enough to go round once; later rounds answer
-- 409 (counted as "other"). Counts answers by status.
local dir = (os.getenv("WRK_DIR") or "loadtest/wrk") .. "/"
local report = dofile(dir .. "report.lua")

local prefix = os.getenv("USER_PREFIX") or error("USER_PREFIX is not set")
local users = tonumber(os.getenv("USERS") or "8")
local password = os.getenv("PASSWORD") or error("PASSWORD is not set")
local threads = tonumber(os.getenv("WRK_THREADS") or "1")
local headers = { ["Content-Type"] = "application/json" }
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
  return wrk.format("POST", "/v1/auth/register", headers, body)
end

function response(status, headers, body)
  report.count(status)
end
