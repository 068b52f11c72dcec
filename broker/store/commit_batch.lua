-- Makes a staged batch (stage_batch.lua) live, all at once: writes its record, puts every
-- staged job in its queue, its owner's and the all-jobs indexes and the start deadlines,
-- keeps the job hashes and the job list for good, appends each job's queued event, wakes
-- polls once per model, and deletes the staging keys. Every check comes before the first
-- write, since Redis does not undo a script's writes when it fails half way.
-- Being one script, it holds Redis for the whole batch: about 20 us a job on a small
-- machine, nearly half of it the queued events, so about a second for the largest batch
-- (50,000 jobs); other clients wait meanwhile (under Redis's 5 s busy-script limit).
-- Touches: batch:{b}, batch:{b}:jobs, owner:{owner}:batches, owner:{owner}:jobs, jobs,
--          queue:{model}:{lane} for each staged queue, start-deadlines, staging:{b}:*,
--          job:{id} and job:{id}:events for each job; publishes to wake.
-- ARGV: 1 batch id, 2 created_ms, 3 total jobs, 4 batch key, 5 job list key, 6 owner batches
--       key, 7 owner jobs key, 8 all-jobs key, 9 staged queues key, 10 staged queue
--       prefix, 11 staged start-deadlines key, 12 owner, 13 its submits a minute|'',
--       14 its most jobs active|'', then the record's fields and values.
-- Returns 'ok'; 'committed' when the batch exists already; 'incomplete' when fewer or
-- more jobs are staged than the total, or staged jobs expired; a refusal by the owner's
-- quotas, 'rate:<ms until one more submit>:<submits a minute>' or
-- 'active:<jobs active>:<the most allowed>' (in all these cases nothing is written).
local batch_id, created_ms, total = ARGV[1], ARGV[2], tonumber(ARGV[3])
local batch_key, job_list, owner_batches = ARGV[4], ARGV[5], ARGV[6]
local owner_jobs, all_jobs = ARGV[7], ARGV[8]
local staged_queues, staged_prefix, staged_deadlines = ARGV[9], ARGV[10], ARGV[11]
local owner, per_minute, max_active = ARGV[12], tonumber(ARGV[13]), tonumber(ARGV[14])
local FIRST_FIELD = 15
local CHUNK = 1000  -- entries per command: unpack() has a stack limit
-- Nobody follows a job of this batch yet (its ids are answered after this script), so
-- the queued event goes to the stream without a publish.
local QUEUED_EVENT = cjson.encode({type = 'status', status = 'queued', attempt = 0})

if redis.call('EXISTS', batch_key) == 1 then return 'committed' end
if redis.call('LLEN', job_list) ~= total then return 'incomplete' end
-- The first chunk's jobs expire first: staged longer than the staging TTL, some are gone.
local first = redis.call('LINDEX', job_list, 0)
if not first or redis.call('EXISTS', job_key(first)) == 0 then return 'incomplete' end
-- A batch holds many models: its refusals are counted under model "".
local active = active_jobs(owner)
if max_active and active + total > max_active then
  count('rate_limited', 'active_jobs' .. SEP .. 'batch' .. SEP)
  return 'active:' .. active .. ':' .. max_active
end
if per_minute then
  local left, wait_ms = take_submit(owner, per_minute, tonumber(created_ms))
  if not left then
    count('rate_limited', 'requests_per_minute' .. SEP .. 'batch' .. SEP)
    return 'rate:' .. wait_ms .. ':' .. per_minute
  end
end
redis.call('INCRBY', ACTIVE_PREFIX .. owner, total)

-- Adds every member of the sorted set `from`, with its score, to each set of `to`.
-- Returns how many it moved.
local function copy_sorted(from, to)
  local moved, start = 0, 0
  while true do
    local page = redis.call('ZRANGE', from, start, start + CHUNK - 1, 'WITHSCORES')
    if #page == 0 then return moved end
    local entries = {}
    for i = 1, #page, 2 do
      entries[#entries + 1] = page[i + 1]
      entries[#entries + 1] = page[i]
    end
    for _, key in ipairs(to) do redis.call('ZADD', key, unpack(entries)) end
    moved = moved + #page / 2
    start = start + CHUNK
  end
end

local record = {}
for i = FIRST_FIELD, #ARGV do record[#record + 1] = ARGV[i] end
redis.call('HSET', batch_key, unpack(record))
redis.call('ZADD', owner_batches, created_ms, batch_id)

-- The batch's jobs take their turns after the owner's earlier work (fair_tag): the k-th
-- one moved, in staged order, is tagged `first_tag` plus k quanta.
local first_tag = fair_tag(owner, 'batch', tonumber(created_ms), total, active == 0)
local tagged = 0
local per_model, staged_keys = {}, {staged_queues, staged_deadlines}
for _, queue in ipairs(redis.call('SMEMBERS', staged_queues)) do
  local colon = string.find(queue, ':', 1, true)
  local lane, model = string.sub(queue, 1, colon - 1), string.sub(queue, colon + 1)
  local staged = staged_prefix .. queue
  local moved = copy_sorted(staged, {owner_jobs, all_jobs})
  local start = 0
  while true do
    local ids = redis.call('ZRANGE', staged, start, start + CHUNK - 1)
    if #ids == 0 then break end
    local entries = {}
    for _, id in ipairs(ids) do
      local tag = first_tag + tagged * FAIR_QUANTUM_MS
      entries[#entries + 1] = tag
      entries[#entries + 1] = id
      redis.call('HSET', job_key(id), 'tag', tag)
      tagged = tagged + 1
    end
    redis.call('ZADD', queue_key(model, lane), unpack(entries))
    start = start + CHUNK
  end
  per_model[model] = (per_model[model] or 0) + moved
  count('submitted', lane .. SEP .. stat_model(model), moved)
  staged_keys[#staged_keys + 1] = staged
end
copy_sorted(staged_deadlines, {START_DEADLINES})

local start = 0
while true do
  local ids = redis.call('LRANGE', job_list, start, start + CHUNK - 1)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    redis.call('PERSIST', job_key(id))
    redis.call('XADD', events_key(id), '*', 'e', QUEUED_EVENT)
  end
  start = start + CHUNK
end
redis.call('PERSIST', job_list)
redis.call('DEL', unpack(staged_keys))
for model, n in pairs(per_model) do wake_many(model, n) end
return 'ok'
