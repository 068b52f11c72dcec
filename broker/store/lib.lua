-- Shared prelude, prepended to every script by scripts.py. The __NAME__ placeholders are
-- filled at load time from keys.py (key names) and garage.contract's ErrorCode
-- (__CODE_*__) and JobErrorType (__TYPE_*__), so each lives in one place.
--
-- Key map (all under garage:):
--   job:{id}          HASH    the job's fields (status, attempt, lease_token, ...)
--   job:{id}:events   STREAM  the job's events; entry field 'e' holds the event JSON
--   queue:{m}:{lane}  ZSET    queued job ids of model m; lowest score is handed out first
--   leases            ZSET    running job id -> lease expiry (ms)
--   start-deadlines   ZSET    queued job id -> start deadline (ms)
--   batch:{id}        HASH    a batch: status, total, completed, failed, timestamps
--   batch:{id}:jobs   LIST    the batch's job ids in input order
--   batches:finalize  ZSET    batch id -> when a broker may (re)try writing its results
--   staging:{id}:*    a batch being created (stage_batch.lua, commit_batch.lua)
--   usage:{owner}:{day}  HASH  one owner's totals on a UTC day, "<counter>\31<model>" -> n
--   usage-owners:{day}   SET   the owners with totals on that day
--   contrib:{key}:{day}  HASH  a worker key's contribution on a UTC day (`contribute`)
--   contrib-keys:{day}   SET   the worker keys with a contribution on that day
--   apikey:{sha256}, apikeys  read only: a worker key's name and owner (`contribute`)
-- Channels: ev:{id} gets "<previous entry id or -> <entry id> <event JSON>"; wake gets
-- "<model> <job id>"
-- when a job becomes claimable ("<model> *<n>" when n jobs of a batch do at once); ended
-- gets the id of a job that reached an end while a broker process other than the one
-- ending it waits for that (the job's 'watched' field: '' nobody, a broker's process id,
-- or '*' for more than one); batch-ev:{id} gets the batch's count of ended jobs when it
-- changes (and its status from the finalizer when it reaches a final one).

local JOB_PREFIX = '__JOB_PREFIX__'
local EVENTS_SUFFIX = '__EVENTS_SUFFIX__'
local QUEUE_PREFIX = '__QUEUE_PREFIX__'
local LEASES = '__LEASES__'
local START_DEADLINES = '__START_DEADLINES__'
local WAKE_CHANNEL = '__WAKE_CHANNEL__'
local ENDED_CHANNEL = '__ENDED_CHANNEL__'
local BATCH_PREFIX = '__BATCH_PREFIX__'
local BATCHES_TO_FINALIZE = '__BATCHES_TO_FINALIZE__'
local EVENTS_CHANNEL_PREFIX = '__EVENTS_CHANNEL_PREFIX__'
local BATCH_CHANNEL_PREFIX = '__BATCH_CHANNEL_PREFIX__'

-- A requeued job goes ahead of every fresh one: fresh jobs score their fair-share tag in
-- ms (~1.8e12, see fair_tag), requeued ones that minus 1e15, which keeps their order too.
local REQUEUE_SHIFT = 1e15

local function job_key(id) return JOB_PREFIX .. id end
local function events_key(id) return JOB_PREFIX .. id .. EVENTS_SUFFIX end
local function queue_key(model, lane) return QUEUE_PREFIX .. model .. ':' .. lane end

-- Appends an event (a Lua table, or JSON text) and tells brokers streaming the job. The
-- message is "<previous entry id or -> <entry id> <event JSON>": a reader that has read up
-- to the previous entry takes the event from the message, without reading the stream.
local function emit(id, event)
  local data = event
  if type(event) ~= 'string' then data = cjson.encode(event) end
  local key = events_key(id)
  local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
  local entry = redis.call('XADD', key, '*', 'e', data)
  redis.call('PUBLISH', EVENTS_CHANNEL_PREFIX .. id,
    (last[1] and last[1][1] or '-') .. ' ' .. entry .. ' ' .. data)
  return entry
end

-- Tells parked polls that a job of `model` can be claimed.
local function wake(model, id)
  redis.call('PUBLISH', WAKE_CHANNEL, model .. ' ' .. id)
end

-- Tells parked polls that `n` jobs of `model` can be claimed, in one message.
local function wake_many(model, n)
  redis.call('PUBLISH', WAKE_CHANNEL, model .. ' *' .. n)
end

-- Fleet-wide statistics (stats.py reads them for /metrics): one hash whose fields are
-- "<family>\31<labels...>\31<model>"; a histogram has its bucket index (or 'sum') first.
local STATS = '__STATS__'
local SEP = '\31'
local BUCKETS = {
  queue_wait = __BUCKETS_QUEUE_WAIT__,
  first_token = __BUCKETS_FIRST_TOKEN__,
  duration = __BUCKETS_DURATION__,
  tokens_per_second = __BUCKETS_TOKENS_PER_SECOND__,
}

-- The model's name as the statistics label it: the first few hundred names seen get their
-- own series, later ones share one, so made-up model names cannot grow the hash forever.
local function stat_model(model)
  if redis.call('SISMEMBER', '__STATS_MODELS__', model) == 1 then return model end
  if redis.call('SCARD', '__STATS_MODELS__') >= __STATS_MAX_MODELS__ then
    return '__STATS_OTHER_MODEL__'
  end
  redis.call('SADD', '__STATS_MODELS__', model)
  return model
end

-- Adds n to a counter; `labels` ends with the model (as stat_model gives it).
local function count(family, labels, n)
  redis.call('HINCRBY', STATS, family .. SEP .. labels, n or 1)
end

-- Adds one observation of `value` to a histogram.
local function observe(family, labels, value)
  local bounds = BUCKETS[family]
  local bucket = #bounds + 1
  for i = 1, #bounds do
    if value <= bounds[i] then bucket = i break end
  end
  redis.call('HINCRBY', STATS, family .. SEP .. bucket .. SEP .. labels, 1)
  redis.call('HINCRBYFLOAT', STATS, family .. SEP .. 'sum' .. SEP .. labels, value)
end

local function error_json(message, kind, code)
  return cjson.encode({message = message, type = kind, code = code})
end

local function emit_error(id, status, attempt, err_json)
  emit(id, '{"type":"error","attempt":' .. attempt .. ',"status":"' .. status ..
    '","error":' .. err_json .. '}')
end

-- Counts a batch job's end and tells brokers waiting on the batch; the last one hands the
-- batch to the finalizers. A batch whose record is gone (past its retention) is left so.
local function count_for_batch(batch_id, status, now_ms)
  local key = BATCH_PREFIX .. batch_id
  if redis.call('EXISTS', key) == 0 then return end
  redis.call('HINCRBY', key, status == 'succeeded' and 'completed' or 'failed', 1)
  local b = redis.call('HMGET', key, 'total', 'completed', 'failed', 'status')
  local ended = tonumber(b[2]) + tonumber(b[3])
  redis.call('PUBLISH', BATCH_CHANNEL_PREFIX .. batch_id, ended)
  if ended >= tonumber(b[1]) then
    if b[4] == 'in_progress' then
      redis.call('HSET', key, 'status', 'finalizing', 'finalizing_ms', now_ms)
    end
    redis.call('ZADD', BATCHES_TO_FINALIZE, now_ms, batch_id)
  end
end

-- Usage accounting (usage.py reads the totals). A job's `usage` field adds up what its
-- attempts reported, and its `estimated_tokens` field the part of that which was estimated.
-- The totals of the job's owner (a hash per owner and UTC day, fields
-- "<counter>\31<model>") count the job once, when it ends having run; a lease the job
-- ended under (cancelled while it ran, or past its deadline) may still report what its
-- attempt used, once (`late_usage_lease`), and that is added to the day the job ended.
local USAGE_PREFIX = '__USAGE_PREFIX__'
local USAGE_OWNERS_PREFIX = '__USAGE_OWNERS_PREFIX__'
local USAGE_RETENTION_MS = __USAGE_RETENTION_MS__

-- 'YYYY-MM-DD' of the UTC day holding `ms` (Howard Hinnant's civil_from_days; Redis's Lua
-- has no os.date).
local function utc_day(ms)
  local z = math.floor(ms / 86400000) + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02d', y, m, d)
end

local function whole(n)
  n = tonumber(n)
  if not n or n < 0 then return 0 end
  return math.floor(n)
end

-- Quotas (quotas.py): a key's jobs queued or running, and its submits a minute.
local ACTIVE_PREFIX = '__ACTIVE_PREFIX__'
local RATE_PREFIX = '__RATE_PREFIX__'

-- Fair share between keys: a queue runs in the order of its jobs' start tags, not of their
-- arrival (start-time fair queueing). Per lane, each owner has a clock; a job queued is
-- tagged max(the owner's clock, the lane's clock) and moves the owner's clock on a
-- quantum, and the lane's clock is the tag of the last job leased. So owners' jobs take
-- turns however many one of them queued, and an owner with nothing active starts at the
-- lane's clock. Tags are in ms (the clock starts at the time of the first tag), so they
-- compare with the jobs queued before fair share and across the models of a lane.
local FAIR_PREFIX = '__FAIR_PREFIX__'
local FAIR_QUANTUM_MS = __FAIR_QUANTUM_MS__

-- The lane's clock: the tag of the last job leased from it (or of the first job tagged).
local function lane_clock(lane, now_ms)
  local key = FAIR_PREFIX .. 'now:' .. lane
  local clock = redis.call('GET', key)
  if clock then return tonumber(clock) end
  redis.call('SET', key, now_ms)
  return now_ms
end

-- Tags n jobs of `owner` in `lane`: returns the first tag; the k-th job's is that plus
-- k quanta. `idle`: the owner has nothing queued or running, so it starts afresh.
local function fair_tag(owner, lane, now_ms, n, idle)
  local clocks = FAIR_PREFIX .. 'owners:' .. lane
  local start = lane_clock(lane, now_ms)
  if not idle then start = math.max(start, tonumber(redis.call('HGET', clocks, owner) or '0')) end
  redis.call('HSET', clocks, owner, start + n * FAIR_QUANTUM_MS)
  return start
end

-- Moves the lane's clock to a leased job's tag (a requeued job's, below zero, does not).
local function lane_leased(lane, tag, now_ms)
  if tag >= 0 and tag > lane_clock(lane, now_ms) then
    redis.call('SET', FAIR_PREFIX .. 'now:' .. lane, tag)
  end
end

local function active_jobs(owner)
  return tonumber(redis.call('GET', ACTIVE_PREFIX .. owner) or '0')
end

-- Takes one submit from `owner`'s allowance of `per_minute` (GCRA: the key holds when the
-- allowance is next whole; a minute's worth may come at once). Returns the submits left
-- and ms until the allowance is whole, or nil and ms until one more is allowed.
local function take_submit(owner, per_minute, now_ms)
  local interval = 60000 / per_minute
  local key = RATE_PREFIX .. owner
  local whole_at = math.max(tonumber(redis.call('GET', key) or '0'), now_ms)
  local allowed_from = whole_at + interval - 60000
  if now_ms < allowed_from then return nil, math.ceil(allowed_from - now_ms) end
  whole_at = whole_at + interval
  redis.call('SET', key, string.format('%.3f', whole_at), 'PX', math.ceil(whole_at - now_ms))
  return math.floor((now_ms - (whole_at - 60000)) / interval), math.ceil(whole_at - now_ms)
end

-- Adds to `owner`'s totals for the UTC day of `at_ms` and `model`.
local function charge(owner, model, at_ms, jobs, prompt, completion, estimated)
  if jobs == 0 and prompt == 0 and completion == 0 then return end
  local day = utc_day(at_ms)
  local key = USAGE_PREFIX .. owner .. ':' .. day
  for _, c in ipairs({{'jobs', jobs}, {'prompt_tokens', prompt},
                      {'completion_tokens', completion}, {'estimated_tokens', estimated}}) do
    if c[2] > 0 then redis.call('HINCRBY', key, c[1] .. SEP .. model, c[2]) end
  end
  redis.call('PEXPIRE', key, USAGE_RETENTION_MS)
  local owners = USAGE_OWNERS_PREFIX .. day
  redis.call('SADD', owners, owner)
  redis.call('PEXPIRE', owners, USAGE_RETENTION_MS)
end

-- Adds one report's usage (JSON) to the job's; `label` is the model as stat_model gives
-- it. Returns the job's usage after it (JSON) and what this report added.
local function record_usage(id, usage_json, label)
  local u = cjson.decode(usage_json)
  local prompt, completion = whole(u.prompt_tokens), whole(u.completion_tokens)
  local estimated = 0
  if u.estimated == true then estimated = prompt + completion end
  local key = job_key(id)
  local had = redis.call('HMGET', key, 'usage', 'estimated_tokens')
  local total = {prompt_tokens = prompt, completion_tokens = completion,
                 estimated = u.estimated == true}
  if had[1] and had[1] ~= '' and had[1] ~= 'null' then
    local before = cjson.decode(had[1])
    total.prompt_tokens = total.prompt_tokens + whole(before.prompt_tokens)
    total.completion_tokens = total.completion_tokens + whole(before.completion_tokens)
    total.estimated = total.estimated or before.estimated == true
  end
  total.total_tokens = total.prompt_tokens + total.completion_tokens
  local encoded = cjson.encode(total)
  redis.call('HSET', key, 'usage', encoded, 'estimated_tokens', whole(had[2]) + estimated)
  if prompt > 0 then count('prompt_tokens', label, prompt) end
  if completion > 0 then count('completion_tokens', label, completion) end
  return encoded, prompt, completion, estimated
end

-- Lets the lease that holds a running job report its usage after the job ended under it.
local function allow_late_usage(id, token)
  redis.call('HSET', job_key(id), 'late_usage_lease', token)
end

-- Charges what a lease reports after its job ended under it, once; from another lease
-- (or a second time) it charges nothing.
local function charge_late_usage(id, token, usage_json)
  if usage_json == '' then return end
  local key = job_key(id)
  local j = redis.call('HMGET', key, 'late_usage_lease', 'owner', 'model', 'finished_ms')
  if not j[1] or j[1] == '' or j[1] ~= token then return end
  redis.call('HSET', key, 'late_usage_lease', '')
  local _, prompt, completion, estimated = record_usage(id, usage_json, stat_model(j[3]))
  charge(j[2], j[3], tonumber(j[4]), 0, prompt, completion, estimated)
end

-- Contribution per worker key (contributions.py reads it). A job that succeeds credits the
-- worker key whose lease produced the result with the job, the attempt's run time (its
-- lease to its result) and the completion tokens its worker reported (`estimated`: those
-- of them that were estimated), per UTC day and worker id: a hash per key and day, fields
-- "<counter>\31<worker id>", plus the key's name and owner as they were that day. Only
-- complete.lua calls it, once per accepted result, so a failed, cancelled, fenced or
-- reaped attempt earns nothing and nothing is ever taken away.
local CONTRIBUTION_PREFIX = '__CONTRIBUTION_PREFIX__'
local CONTRIBUTION_KEYS_PREFIX = '__CONTRIBUTION_KEYS_PREFIX__'
local CONTRIBUTION_RETENTION_MS = __CONTRIBUTION_RETENTION_MS__

local function contribute(key_id, worker, busy_ms, completion, estimated, now_ms)
  local day = utc_day(now_ms)
  local key = CONTRIBUTION_PREFIX .. key_id .. ':' .. day
  for _, c in ipairs({{'jobs', 1}, {'busy_ms', math.max(busy_ms, 0)},
                      {'completion_tokens', completion}, {'estimated_tokens', estimated}}) do
    if c[2] > 0 then redis.call('HINCRBY', key, c[1] .. SEP .. worker, c[2]) end
  end
  local digest = redis.call('HGET', '__API_KEY_IDS__', key_id)
  if digest then
    local k = redis.call('HMGET', '__API_KEY_PREFIX__' .. digest, 'name', 'owner')
    if k[1] then redis.call('HSET', key, 'name', k[1]) end
    if k[2] then redis.call('HSET', key, 'owner', k[2]) end
  end
  redis.call('PEXPIRE', key, CONTRIBUTION_RETENTION_MS)
  local keys_of_day = CONTRIBUTION_KEYS_PREFIX .. day
  redis.call('SADD', keys_of_day, key_id)
  redis.call('PEXPIRE', keys_of_day, CONTRIBUTION_RETENTION_MS)
end

-- Moves a job to a terminal status. Terminal states never change again: every script
-- checks the status before it writes. The job, its events and its idempotency key then
-- expire after the retention time. A batch job is counted in its batch, and a job that
-- ran in its owner's usage. `ended_by` is the broker process that ends it, which tells its
-- own waiters without a message.
local function finish(id, status, now_ms, retention_ms, fields, ended_by)
  local key = job_key(id)
  local j = redis.call('HMGET', key, 'batch_id', 'idem', 'watched', 'status', 'model', 'lane',
    'started_ms', 'owner', 'usage', 'estimated_tokens')
  local batch_id, idem, watched = j[1], j[2], j[3]
  redis.call('HSET', key, 'status', status, 'finished_ms', now_ms, unpack(fields))
  local labels = j[6] .. SEP .. stat_model(j[5])
  count('finished', status .. SEP .. labels)
  if redis.call('DECR', ACTIVE_PREFIX .. j[8]) < 0 then  -- made before quotas were counted
    redis.call('SET', ACTIVE_PREFIX .. j[8], 0)
  end
  if j[4] == 'running' then
    observe('duration', status .. SEP .. labels, (now_ms - tonumber(j[7])) / 1000)
  end
  if j[7] and j[7] ~= '' then
    local u = {}
    if j[9] and j[9] ~= '' and j[9] ~= 'null' then u = cjson.decode(j[9]) end
    charge(j[8], j[5], now_ms, 1, whole(u.prompt_tokens), whole(u.completion_tokens),
      whole(j[10]))
  end
  if batch_id and batch_id ~= '' then count_for_batch(batch_id, status, now_ms) end
  redis.call('ZREM', LEASES, id)
  redis.call('ZREM', START_DEADLINES, id)
  redis.call('PEXPIRE', key, retention_ms)
  redis.call('PEXPIRE', events_key(id), retention_ms)
  if idem and idem ~= '' then redis.call('PEXPIRE', idem, retention_ms) end
  if watched and watched ~= '' and watched ~= ended_by then
    redis.call('PUBLISH', ENDED_CHANNEL, id)
  end
end

-- Fails a job with an error event.
local function fail_job(id, attempt, now_ms, retention_ms, err_json, ended_by)
  emit_error(id, 'failed', attempt, err_json)
  finish(id, 'failed', now_ms, retention_ms, {'error', err_json}, ended_by)
end

-- Puts a running job back at the front of its queue for a fresh attempt. Readers of its
-- stream get a restart event first, so they drop the text of the attempt that ended.
-- `why` (lease_expired, retryable_error, handed_back) labels the retry in the statistics.
local function requeue(id, reason, why)
  local key = job_key(id)
  local j = redis.call('HMGET', key, 'model', 'lane', 'created_ms', 'attempt', 'tag')
  local attempt = tonumber(j[4])
  if not j[5] or j[5] == '' then j[5] = j[3] end  -- queued before fair share
  count('retries', why .. SEP .. j[2] .. SEP .. stat_model(j[1]))
  redis.call('HSET', key, 'status', 'queued', 'lease_token', '', 'lease_owner', '',
    'worker', '')
  redis.call('ZREM', LEASES, id)
  redis.call('ZADD', queue_key(j[1], j[2]), tonumber(j[5]) - REQUEUE_SHIFT, id)
  emit(id, {type = 'restart', attempt = attempt + 1, reason = reason})
  emit(id, {type = 'status', status = 'queued', attempt = attempt})
  wake(j[1], id)
end

-- Checks that a report comes from the holder of the job's current lease. Returns the
-- job's fields (status, lease_token, lease_owner, attempt, deadline_ms, then `extra`) and
-- on refusal the reply to give: 'gone', 'stale' (409), or 'ended' (the job ended while
-- this lease held it: cancelled, or finished by this very lease).
local function check_lease(id, token, owner, extra)
  local j = redis.call('HMGET', job_key(id), 'status', 'lease_token', 'lease_owner',
    'attempt', 'deadline_ms', unpack(extra or {}))
  if not j[1] then return j, 'gone' end
  if j[2] ~= token or j[3] ~= owner then
    redis.call('HINCRBY', STATS, 'fenced', 1)
    return j, 'stale'
  end
  if j[1] ~= 'running' then return j, 'ended' end
  return j, nil
end

-- Whether a running job has outlived its deadline; such a job is failed at once.
local function past_deadline(j, now_ms)
  return j[5] and j[5] ~= '' and now_ms > tonumber(j[5])
end

-- Expires a queued job that no worker started before its start deadline.
local function expire_job(id, attempt, now_ms, retention_ms)
  local err = error_json('no worker started the job before its start deadline',
    '__TYPE_EXPIRED__', '__CODE_START_DEADLINE_EXCEEDED__')
  emit_error(id, 'expired', attempt, err)
  finish(id, 'expired', now_ms, retention_ms, {'error', err})
end

-- Written out, not built with error_json: the prelude runs on every call of every script.
local DEADLINE_ERROR =
  '{"message":"the job ran past its deadline","type":"__TYPE_TIMEOUT__","code":"__CODE_DEADLINE_EXCEEDED__"}'
