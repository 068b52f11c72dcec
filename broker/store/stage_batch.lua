-- Stages one chunk of a batch's jobs where nothing reads them yet: each job's hash as
-- submit.lua writes a batch job, its id appended to the batch's job list and added to the
-- batch's staging sets, every key expiring after the staging TTL. No queue, index or
-- start deadline sees the jobs and no event is emitted, so a broker that dies before
-- commit_batch.lua runs leaves only keys that expire by themselves.
-- Touches: job:{id} for each job, batch:{b}:jobs, staging:{b}:queues,
--          staging:{b}:queue:{lane}:{model}, staging:{b}:start-deadlines.
-- ARGV: 1 batch id, 2 owner, 3 now_ms, 4 staging TTL (ms), 5 the batch's job list key,
--       6 staged queues key, 7 staged queue prefix, 8 staged start-deadlines key,
--       then 9 values per job: id, model, kind, lane, request JSON, max_attempts,
--       start_deadline_ms|'', deadline_ms|'', metadata JSON.
-- Returns the number of jobs the batch has staged so far.
local batch_id, owner, now_ms, ttl_ms = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local job_list, staged_queues, staged_prefix = ARGV[5], ARGV[6], ARGV[7]
local staged_deadlines = ARGV[8]
local FIRST, WIDTH = 9, 9

local ids, by_queue, deadlines = {}, {}, {}
for i = FIRST, #ARGV, WIDTH do
  local id, model, lane, start_deadline = ARGV[i], ARGV[i + 1], ARGV[i + 3], ARGV[i + 6]
  local key = job_key(id)
  redis.call('HSET', key,
    'id', id, 'owner', owner, 'model', model, 'kind', ARGV[i + 2], 'lane', lane,
    'request', ARGV[i + 4], 'status', 'queued', 'attempt', 0, 'max_attempts', ARGV[i + 5],
    'created_ms', now_ms, 'start_deadline_ms', start_deadline, 'deadline_ms', ARGV[i + 7],
    'metadata', ARGV[i + 8], 'batch_id', batch_id, 'idem', '', 'watched', '')
  redis.call('PEXPIRE', key, ttl_ms)
  ids[#ids + 1] = id
  local queue = lane .. ':' .. model
  if not by_queue[queue] then by_queue[queue] = {} end
  local entries = by_queue[queue]
  entries[#entries + 1] = now_ms  -- scored as submit.lua scores a fresh job
  entries[#entries + 1] = id
  if start_deadline ~= '' then
    deadlines[#deadlines + 1] = start_deadline
    deadlines[#deadlines + 1] = id
  end
end

local staged = redis.call('RPUSH', job_list, unpack(ids))
redis.call('PEXPIRE', job_list, ttl_ms)
for queue, entries in pairs(by_queue) do
  redis.call('SADD', staged_queues, queue)
  redis.call('ZADD', staged_prefix .. queue, unpack(entries))
  redis.call('PEXPIRE', staged_prefix .. queue, ttl_ms)
end
redis.call('PEXPIRE', staged_queues, ttl_ms)
if #deadlines > 0 then
  redis.call('ZADD', staged_deadlines, unpack(deadlines))
  redis.call('PEXPIRE', staged_deadlines, ttl_ms)
end
return staged
