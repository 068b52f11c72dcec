-- Cancels a queued or running job. A running job keeps its lease token, so the worker's
-- next report is answered "cancelled" (and it aborts) rather than 409, and its final
-- report may still charge what the attempt used (complete.lua, fail.lua).
-- Touches: job:{id}, job:{id}:events, queue:{model}:{lane}, leases, start-deadlines,
--          usage:{owner}:{day}, usage-owners:{day}.
-- ARGV: 1 id, 2 now_ms, 3 retention_ms, 4 error JSON, 5 the calling broker's process id
-- Returns 'cancelled', 'gone', or the terminal status the job already had.
local id, now_ms = ARGV[1], tonumber(ARGV[2])
local j = redis.call('HMGET', job_key(id), 'status', 'model', 'lane', 'attempt', 'lease_token')
if not j[1] then return 'gone' end
if j[1] ~= 'queued' and j[1] ~= 'running' then return j[1] end
if j[1] == 'queued' then redis.call('ZREM', queue_key(j[2], j[3]), id) end
if j[1] == 'running' then allow_late_usage(id, j[5]) end  -- its worker reports what it used
count('cancelled', j[1] .. SEP .. j[3] .. SEP .. stat_model(j[2]))
emit_error(id, 'cancelled', tonumber(j[4]), ARGV[4])
finish(id, 'cancelled', now_ms, tonumber(ARGV[3]), {'error', ARGV[4]}, ARGV[5])
return 'cancelled'
