-- wrk: GET $WRK_PATH (default /v1/profile) with $TOKEN as a bearer token and/or $COOKIE as
-- the Cookie header (e.g. "sid=..." for sessiond, "id=..." for tower-sessions). Counts answers
-- by status, so that the results say how many requests were answered 2xx.
--   COOKIE=sid=... WRK_PATH=/v1/profile WRK_JSON=out.json wrk -t2 -c64 -d15s -s loadtest/wrk/get.lua URL
local dir = (os.getenv("WRK_DIR") or "loadtest/wrk") .. "/"
local report = dofile(dir .. "report.lua")

local token = os.getenv("TOKEN")
local cookie = os.getenv("COOKIE")
if (not token or token == "") and (not cookie or cookie == "") then error("set TOKEN or COOKIE") end
wrk.method = "GET"
wrk.path = os.getenv("WRK_PATH") or "/v1/profile"
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
if cookie and cookie ~= "" then wrk.headers["Cookie"] = cookie end

setup = report.setup
done = report.done

function init(args)
  report.init_counts()
end

function response(status, headers, body)
  report.count(status)
end
