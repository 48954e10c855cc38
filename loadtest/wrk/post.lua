-- wrk: POST $WRK_PATH with $BODY (content type $CONTENT_TYPE, default form), a bearer $TOKEN
-- and/or a backend API key $API_KEY (`Authorization: ApiKey`, which then takes the place of the
-- bearer). Counts answers by status.
--   TOKEN=... WRK_PATH=/v1/auth/token WRK_JSON=out.json wrk -t2 -c64 -d15s -s loadtest/wrk/post.lua URL
--   API_KEY=... BODY=token=... WRK_PATH=/v1/introspect wrk ... -s loadtest/wrk/post.lua URL
local dir = (os.getenv("WRK_DIR") or "loadtest/wrk") .. "/"
local report = dofile(dir .. "report.lua")

local token = os.getenv("TOKEN")
local key = os.getenv("API_KEY")
wrk.method = "POST"
wrk.path = os.getenv("WRK_PATH") or error("WRK_PATH is not set")
wrk.body = os.getenv("BODY") or ""
wrk.headers["Content-Type"] = os.getenv("CONTENT_TYPE") or "application/x-www-form-urlencoded"
if key and key ~= "" then
  wrk.headers["Authorization"] = "ApiKey " .. key
elseif token and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

setup = report.setup
done = report.done

function init(args)
  report.init_counts()
end

function response(status, headers, body)
  report.count(status)
end
