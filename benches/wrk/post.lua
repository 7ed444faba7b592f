-- wrk script: POST the body in $WRK_BODY (default: the seed request) with curl's form type,
-- exactly as the users' `curl -X POST -d '…'` sends it.
wrk.method = "POST"
wrk.body = os.getenv("WRK_BODY") or '{"petal_width": "2.1"}'
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"

-- Count non-2xx answers so the summary can report them (wrk only counts >= 400 on its own).
local bad = 0
response = function(status, headers, body)
  if status < 200 or status > 299 then bad = bad + 1 end
end
