-- wrk script for limen's benchmarks. The request comes from the environment:
--   WRK_METHOD (default GET), WRK_BODY (default none), WRK_CONTENT_TYPE (default curl's form
--   type, exactly as the users' `curl -X POST -d '…'` sends it).
-- At the end it prints one JSON line with the exact percentiles (wrk's own summary stops at 99%).
wrk.method = os.getenv("WRK_METHOD") or "GET"
local body = os.getenv("WRK_BODY")
if body and #body > 0 then
  wrk.body = body
  wrk.headers["Content-Type"] = os.getenv("WRK_CONTENT_TYPE") or "application/x-www-form-urlencoded"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "p999_us": %d, "errors": %d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
