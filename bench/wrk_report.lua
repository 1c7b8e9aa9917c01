-- The end of every bench's wrk script (bench/*/run.py append it to their own setup, init and
-- request): wrk's summary as one line "JSON {...}" on stdout, which their wrk() parses.
-- requests and duration_us (microseconds) of the run; errors: connect + read + write + timeout;
-- non2xx: responses with another status; p50, p95, p99: latency percentiles in microseconds.
done = function(summary, latency, requests)
  io.write(string.format("JSON {\"requests\": %d, \"duration_us\": %d, \"errors\": %d,"
    .. " \"non2xx\": %d, \"p50\": %d, \"p95\": %d, \"p99\": %d}\n",
    summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
