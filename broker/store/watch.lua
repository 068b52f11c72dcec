-- A broker process is about to wait for a job's end: marks the job, so that whoever ends
-- it publishes the end unless it is that same process (see finish in lib.lua).
-- Touches: job:{id}.
-- ARGV: 1 id, 2 the waiting broker's process id
-- Returns the job's status, or false when there is no such job.
local key = job_key(ARGV[1])
local j = redis.call('HMGET', key, 'status', 'watched')
if not j[1] then return false end
if j[2] == false or j[2] == '' then
  redis.call('HSET', key, 'watched', ARGV[2])
elseif j[2] ~= ARGV[2] then
  redis.call('HSET', key, 'watched', '*')
end
return j[1]
