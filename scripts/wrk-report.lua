-- wrk -s scripts/wrk-report.lua (scripts/lib-load.sh runs it): prints, when wrk ends (its duration, or
-- SIGINT), one line the demo, tests and bench read:
--   kiln-load: sent=N failed=M connect=C read=R write=W timeout=T status=S
-- failed = requests without a response (connect, read, write errors and
-- timeouts) + responses with a status of 400 or more (wrk's "status"
-- count: every 5xx, and 4xx too, which is stricter than needed).
-- sent = responses received + the failures without one.
done = function(summary, latency, requests)
	local e = summary.errors
	local noreply = e.connect + e.read + e.write + e.timeout
	io.write(string.format("kiln-load: sent=%d failed=%d connect=%d read=%d write=%d timeout=%d status=%d\n",
		summary.requests + noreply, noreply + e.status, e.connect, e.read, e.write, e.timeout, e.status))
end
