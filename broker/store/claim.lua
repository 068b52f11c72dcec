-- Leases up to as many jobs as the caller sends tokens: interactive before batch, and
-- within a lane the job with the lowest score (requeued first, then the lowest fair-share
-- tag, so keys take turns: fair_tag in lib.lua) across the
-- worker's models. Jobs past their start deadline are expired on the way.
-- Touches: queue:{model}:{lane} for each model and lane, job:{id}, job:{id}:events,
--          leases, start-deadlines, usage:{owner}:{day} and usage-owners:{day} (a job that
--          ran before and ends here).
-- ARGV: 1 now_ms, 2 lease_ms, 3 worker id, 4 lease owner (API key id), 5 min_wait_ms,
--       6 retention_ms, 7 model count n, 8..7+n models, then one fresh token per slot.
-- Returns a flat list, 8 fields per lease:
--   id, token, attempt, model, kind, lane, request JSON, deadline_ms|''.
local now_ms, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local worker_id, owner = ARGV[3], ARGV[4]
local min_wait_ms, retention_ms = tonumber(ARGV[5]), tonumber(ARGV[6])
local n = tonumber(ARGV[7])
local first_token = 8 + n
local slots = #ARGV - first_token + 1

local leases = {}
local taken = 0
for _, lane in ipairs({'interactive', 'batch'}) do
  local queues, exhausted = {}, {}
  for i = 1, n do queues[i] = queue_key(ARGV[7 + i], lane) end
  while taken < slots do
    local best, best_score, best_q = nil, nil, nil
    for i, q in ipairs(queues) do
      if not exhausted[i] then
        local head = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
        if #head == 0 then
          exhausted[i] = true
        elseif best == nil or tonumber(head[2]) < best_score then
          best, best_score, best_q = head[1], tonumber(head[2]), i
        end
      end
    end
    if best == nil then break end

    local key = job_key(best)
    local j = redis.call('HMGET', key, 'status', 'created_ms', 'start_deadline_ms',
      'attempt', 'model', 'kind', 'lane', 'request', 'deadline_ms')
    if min_wait_ms > 0 and j[2] and tonumber(j[2]) > now_ms - min_wait_ms then
      -- A fallback worker takes only jobs that waited; the head is the oldest job.
      exhausted[best_q] = true
    else
      redis.call('ZREM', queues[best_q], best)
      local attempt = tonumber(j[4] or 0)
      if j[1] ~= 'queued' then
        -- A stale entry of a job that expired from Redis or already moved on.
        redis.call('ZREM', START_DEADLINES, best)
      elseif j[3] ~= '' and tonumber(j[3]) < now_ms then
        expire_job(best, attempt, now_ms, retention_ms)
      elseif j[9] ~= '' and tonumber(j[9]) < now_ms then
        fail_job(best, attempt, now_ms, retention_ms, DEADLINE_ERROR)
      else
        if attempt == 0 then
          observe('queue_wait', j[7] .. SEP .. stat_model(j[5]),
            (now_ms - tonumber(j[2])) / 1000)
        end
        lane_leased(lane, best_score, now_ms)
        attempt = attempt + 1
        taken = taken + 1
        local token = ARGV[first_token + taken - 1]
        redis.call('HSET', key, 'status', 'running', 'attempt', attempt,
          'lease_token', token, 'lease_owner', owner, 'worker', worker_id,
          'started_ms', now_ms, 'first_token_ms', '', 'report_seq', '')
        redis.call('ZADD', LEASES, now_ms + lease_ms, best)
        redis.call('ZREM', START_DEADLINES, best)
        emit(best, {type = 'status', status = 'running', attempt = attempt,
          worker = worker_id})
        for _, v in ipairs({best, token, attempt, j[5], j[6], j[7], j[8], j[9]}) do
          leases[#leases + 1] = v
        end
      end
    end
  end
end
return leases
