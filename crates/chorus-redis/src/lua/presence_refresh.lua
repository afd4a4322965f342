-- Pushes an entry's expiry forward; 0 when the entry is gone, or expired at
-- `now` and not swept yet: lists read since leave it out, so only a join
-- (announced) may bring it back.
-- KEYS: members, expiry. ARGV: connection, expires_at, now
local at = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not at or tonumber(at) <= tonumber(ARGV[3]) or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
