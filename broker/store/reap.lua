-- Requeues running jobs whose lease ran out (or fails them when attempts are used up) and
-- expires queued jobs past their start deadline. Every broker replica may run it at any
-- time: the script is atomic and re-checks each job's status before it writes.
-- Touches: leases, start-deadlines, and for each job found: job:{id}, job:{id}:events,
--          queue:{model}:{lane}, usage:{owner}:{day}, usage-owners:{day}.
-- ARGV: 1 now_ms, 2 limit per kind, 3 retention_ms
-- Returns {requeued, failed, expired}.
local now_ms, limit, retention_ms = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local requeued, failed, expired = 0, 0, 0

local lapsed = redis.call('ZRANGEBYSCORE', LEASES, '-inf', now_ms, 'LIMIT', 0, limit)
for _, id in ipairs(lapsed) do
  redis.call('ZREM', LEASES, id)
  local j = redis.call('HMGET', job_key(id), 'status', 'attempt', 'max_attempts', 'model',
    'lane')
  if j[1] == 'running' then
    count('lease_expiries', j[5] .. SEP .. stat_model(j[4]))
    if tonumber(j[2]) < tonumber(j[3]) then
      requeue(id, 'lease expired', 'lease_expired')
      requeued = requeued + 1
    else
      fail_job(id, j[2], now_ms, retention_ms, error_json(
        'the lease ran out on the last attempt', '__TYPE_LEASE_EXPIRED__',
        '__CODE_ATTEMPTS_EXHAUSTED__'))
      failed = failed + 1
    end
  end
end

local late = redis.call('ZRANGEBYSCORE', START_DEADLINES, '-inf', now_ms, 'LIMIT', 0, limit)
for _, id in ipairs(late) do
  redis.call('ZREM', START_DEADLINES, id)
  local j = redis.call('HMGET', job_key(id), 'status', 'model', 'lane', 'attempt')
  if j[1] == 'queued' then
    redis.call('ZREM', queue_key(j[2], j[3]), id)
    expire_job(id, tonumber(j[4]), now_ms, retention_ms)
    expired = expired + 1
  end
end
return {requeued, failed, expired}
