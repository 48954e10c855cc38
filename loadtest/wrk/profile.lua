-- wrk: GET /v1/profile with a bearer token (session validation). $TOKEN is the token.
--   TOKEN=... WRK_JSON=out.json wrk -t2 -c64 -d15s -s loadtest/wrk/profile.lua http://127.0.0.1:8080
local dir = (os.getenv("WRK_DIR") or "loadtest/wrk") .. "/"
local report = dofile(dir .. "report.lua")

local token = os.getenv("TOKEN")
if not token or token == "" then error("TOKEN is not set") end
wrk.method = "GET"
wrk.path = "/v1/profile"
wrk.headers["Authorization"] = "Bearer " .. token

setup = report.setup
done = report.done
