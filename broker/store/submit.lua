-- Enqueues a job, or returns the owner's existing job for the same idempotency key.
-- Touches: job:{id}, job:{id}:events, queue:{model}:{lane}, owner:{owner}:jobs, jobs,
--          start-deadlines, the idempotency key; publishes to wake.
-- ARGV: 1 id, 2 owner, 3 model, 4 kind, 5 lane, 6 request JSON, 7 max_attempts, 8 now_ms,
--       9 start_deadline_ms|'', 10 deadline_ms|'', 11 metadata JSON, 12 batch_id|'',
--       13 idempotency key|'', 14 owner index key, 15 all-jobs key,
--       16 worker id|'', 17 lease owner|'', 18 lease token|'', 19 lease_ms|'',
--       20 the process id of a broker that waits for the job's end|'',
--       21 the owner's submits a minute|'' (no limit), 22 its most jobs active|''
-- With a lease token the job is created already leased to that worker (a poll parked in
-- the submitting broker): it never enters the queue and no wake is published.
-- Returns {job id, 1, {}, submits left, ms until the allowance is whole, the owner's jobs
-- active now} when created (submits left and ms '' with no rate limit), {existing id, 0, its fields as HGETALL lists
-- them} for an idempotency key seen before, or a refusal that changed nothing:
-- {'', 'rate', ms until one more is allowed, submits a minute} or
-- {'', 'active', jobs active, the most allowed}.
local id, owner, model, lane = ARGV[1], ARGV[2], ARGV[3], ARGV[5]
local now_ms, start_deadline, idem = tonumber(ARGV[8]), ARGV[9], ARGV[13]

if idem ~= '' then
  local existing = redis.call('GET', idem)
  if existing and redis.call('EXISTS', job_key(existing)) == 1 then
    return {existing, 0, redis.call('HGETALL', job_key(existing))}
  end
end

local per_minute, max_active = tonumber(ARGV[21]), tonumber(ARGV[22])
local active = active_jobs(owner)
if max_active and active >= max_active then
  count('rate_limited', 'active_jobs' .. SEP .. lane .. SEP .. stat_model(model))
  return {'', 'active', active, max_active}
end
local left, whole_in = '', ''
if per_minute then
  left, whole_in = take_submit(owner, per_minute, now_ms)
  if not left then
    count('rate_limited', 'requests_per_minute' .. SEP .. lane .. SEP .. stat_model(model))
    return {'', 'rate', whole_in, per_minute}
  end
end
redis.call('INCR', ACTIVE_PREFIX .. owner)

local token = ARGV[18]
local status, attempt = 'queued', 0
if token ~= '' then status, attempt = 'running', 1 end
local fields = {
  'id', id, 'owner', owner, 'model', model, 'kind', ARGV[4], 'lane', lane,
  'request', ARGV[6], 'status', status, 'attempt', attempt, 'max_attempts', ARGV[7],
  'created_ms', ARGV[8], 'start_deadline_ms', start_deadline, 'deadline_ms', ARGV[10],
  'metadata', ARGV[11], 'batch_id', ARGV[12], 'idem', idem, 'watched', ARGV[20]}
if token ~= '' then  -- created leased: the lease's fields go in the same write
  for _, v in ipairs({'lease_token', token, 'lease_owner', ARGV[17], 'worker', ARGV[16],
                      'started_ms', now_ms, 'first_token_ms', '', 'report_seq', ''}) do
    fields[#fields + 1] = v
  end
end
redis.call('HSET', job_key(id), unpack(fields))
local labels = lane .. SEP .. stat_model(model)
count('submitted', labels)
redis.call('ZADD', ARGV[14], now_ms, id)
redis.call('ZADD', ARGV[15], now_ms, id)
if idem ~= '' then redis.call('SET', idem, id) end
emit(id, {type = 'status', status = 'queued', attempt = 0})
if token ~= '' then
  redis.call('ZADD', LEASES, now_ms + tonumber(ARGV[19]), id)
  observe('queue_wait', labels, 0)
  emit(id, {type = 'status', status = 'running', attempt = 1, worker = ARGV[16]})
  return {id, 1, {}, left, whole_in, active + 1}
end
local tag = fair_tag(owner, lane, now_ms, 1, active == 0)
redis.call('HSET', job_key(id), 'tag', tag)
redis.call('ZADD', queue_key(model, lane), tag, id)
if start_deadline ~= '' then
  redis.call('ZADD', START_DEADLINES, tonumber(start_deadline), id)
end
wake(model, id)
return {id, 1, {}, left, whole_in, active + 1}
