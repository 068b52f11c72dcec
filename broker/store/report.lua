-- A worker's report on a lease it holds: renews the lease and appends streamed text.
-- A report numbered `seq` adds its text only if no report with that number or a later one
-- was applied under this lease, so a worker may send a report again after a broken
-- connection without doubling its text.
-- Touches: job:{id}, job:{id}:events, leases, usage:{owner}:{day}, usage-owners:{day}.
-- ARGV: 1 id, 2 lease token, 3 lease owner, 4 now_ms, 5 lease_ms, 6 text, 7 retention_ms,
--       8 seq|''
-- Returns 'ok', 'ended' (cancelled or finished: stop work), 'stale' (409) or 'gone' (404).
local id, now_ms, seq = ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[8])
local j, reply = check_lease(id, ARGV[2], ARGV[3], {'first_token_ms', 'report_seq',
  'created_ms', 'model', 'lane'})
if reply then return reply end
if past_deadline(j, now_ms) then
  allow_late_usage(id, ARGV[2])  -- the worker stops and reports what it used
  fail_job(id, j[4], now_ms, tonumber(ARGV[7]), DEADLINE_ERROR)
  return 'ended'
end
redis.call('ZADD', LEASES, now_ms + tonumber(ARGV[5]), id)
if seq then
  if j[7] and j[7] ~= '' and tonumber(j[7]) >= seq then return 'ok' end  -- sent again
  redis.call('HSET', job_key(id), 'report_seq', seq)
end
if ARGV[6] ~= '' then
  emit(id, {type = 'delta', attempt = tonumber(j[4]), text = ARGV[6]})
  if j[6] == '' then
    redis.call('HSET', job_key(id), 'first_token_ms', now_ms)
    observe('first_token', j[10] .. SEP .. stat_model(j[9]), (now_ms - tonumber(j[8])) / 1000)
  end
end
return 'ok'
