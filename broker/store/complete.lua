-- Accepts a job's result from the holder of its lease; exactly one result is accepted.
-- A result for a job that was cancelled while this lease ran it charges its usage only.
-- An accepted result credits the lease's worker key (`contribute`).
-- Touches: job:{id}, job:{id}:events, leases, start-deadlines, the idempotency key,
--          usage:{owner}:{day}, usage-owners:{day}, contrib:{lease owner}:{day},
--          contrib-keys:{day}; reads apikeys, apikey:{sha256}.
-- ARGV: 1 id, 2 lease token, 3 lease owner, 4 now_ms, 5 result JSON, 6 usage JSON|'',
--       7 worker timings JSON|'', 8 trailing text, 9 retention_ms, 10 '1' to return the job,
--       11 the calling broker's process id
-- Returns 'ok', 'ended', 'stale' or 'gone' as report.lua does, or 'repeated' when this
-- lease's result was accepted already (the worker sent it again after a broken
-- connection); with ARGV[10] = '1', an accepted result returns {'ok', the finished job's
-- fields as HGETALL lists them}.
local id, now_ms, result, usage = ARGV[1], tonumber(ARGV[4]), ARGV[5], ARGV[6]
local j, reply = check_lease(id, ARGV[2], ARGV[3], {'first_token_ms', 'started_ms',
  'created_ms', 'model', 'lane', 'usage', 'worker'})
if reply == 'ended' then
  if j[1] == 'succeeded' then return 'repeated' end  -- sent again
  charge_late_usage(id, ARGV[2], usage)  -- cancelled while it ran: what it used counts
end
if reply then return reply end
local attempt = tonumber(j[4])
if ARGV[8] ~= '' then emit(id, {type = 'delta', attempt = attempt, text = ARGV[8]}) end

local timings = {}
if ARGV[7] ~= '' then timings = cjson.decode(ARGV[7]) end
local started, created = tonumber(j[7]), tonumber(j[8])
timings.queued_ms = started - created
timings.run_ms = now_ms - started
timings.total_ms = now_ms - created
if timings.first_token_ms == nil and j[6] ~= '' then
  timings.first_token_ms = tonumber(j[6]) - started
end
local timings_json = cjson.encode(timings)
local model = stat_model(j[9])
if j[6] == '' and ARGV[8] ~= '' then
  observe('first_token', j[10] .. SEP .. model, (now_ms - created) / 1000)
end
-- The job's usage adds up its attempts' (earlier ones may have reported some).
local job_usage, completion, estimated = j[11], 0, 0
if usage ~= '' then
  local _
  job_usage, _, completion, estimated = record_usage(id, usage, model)
  if completion >= 1 and now_ms > started then
    observe('tokens_per_second', model, completion / ((now_ms - started) / 1000))
  end
end
if not job_usage or job_usage == '' then job_usage = 'null' end

emit(id, '{"type":"done","attempt":' .. attempt .. ',"result":' .. result ..
  ',"usage":' .. job_usage .. '}')
finish(id, 'succeeded', now_ms, tonumber(ARGV[9]),
  {'result', result, 'timings', timings_json}, ARGV[11])
contribute(ARGV[3], j[12] or '', now_ms - started, completion, estimated > 0 and completion or 0,
  now_ms)
if ARGV[10] == '1' then return {'ok', redis.call('HGETALL', job_key(id))} end
return 'ok'
