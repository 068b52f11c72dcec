-- Hands one finished batch to this broker to write its output files. The claim lasts
-- ARGV[2] ms: a broker that dies while writing leaves the batch to another after that.
-- Touches: batches:finalize.
-- ARGV: 1 now_ms, 2 claim_ms
-- Returns the batch id, or false when none is due.
local now_ms = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', BATCHES_TO_FINALIZE, '-inf', now_ms, 'LIMIT', 0, 1)
if #due == 0 then return false end
redis.call('ZADD', BATCHES_TO_FINALIZE, now_ms + tonumber(ARGV[2]), due[1])
return due[1]
