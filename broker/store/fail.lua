-- A worker reports that its attempt failed, or hands the job back while draining.
-- A handback requeues without using an attempt; a retryable error requeues while attempts
-- are left; anything else fails the job.
-- What the attempt used (ARGV[11]) is added to the job's usage, and charged to its owner
-- when the job ends; a job cancelled while this lease ran it is charged it too, once.
-- Touches: job:{id}, job:{id}:events, queue:{model}:{lane}, leases, start-deadlines,
--          usage:{owner}:{day}, usage-owners:{day}.
-- ARGV: 1 id, 2 lease token, 3 lease owner, 4 now_ms, 5 error JSON, 6 retryable 0|1,
--       7 handback 0|1, 8 retention_ms, 9 reason for readers of the stream,
--       10 the calling broker's process id, 11 usage JSON|''
-- Returns 'requeued', 'failed', or 'ended', 'stale', 'gone' as report.lua does, or
-- 'repeated' when this lease's failure ended the job already (a report sent again).
local id, now_ms, usage = ARGV[1], tonumber(ARGV[4]), ARGV[11]
local j, reply = check_lease(id, ARGV[2], ARGV[3], {'max_attempts', 'model'})
if reply == 'ended' then
  charge_late_usage(id, ARGV[2], usage)
  if j[1] == 'failed' then return 'repeated' end  -- sent again
end
if reply then return reply end
local attempt, max_attempts = tonumber(j[4]), tonumber(j[6])
if usage ~= '' then record_usage(id, usage, stat_model(j[7])) end
if ARGV[7] == '1' then
  redis.call('HSET', job_key(id), 'max_attempts', max_attempts + 1)
  requeue(id, ARGV[9], 'handed_back')
  return 'requeued'
end
if ARGV[6] == '1' and attempt < max_attempts and not past_deadline(j, now_ms) then
  redis.call('HSET', job_key(id), 'last_error', ARGV[5])
  requeue(id, ARGV[9], 'retryable_error')
  return 'requeued'
end
fail_job(id, attempt, now_ms, tonumber(ARGV[8]), ARGV[5], ARGV[10])
return 'failed'
