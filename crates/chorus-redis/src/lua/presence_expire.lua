-- Removes one room's entries expired at `now`; each is returned by exactly
-- one call, however many nodes sweep.
-- KEYS: members, states, expiry. ARGV: now
-- Returns {live count, earliest expiry left ('' if none), member, state, ...}
-- so the caller can point the rooms index at the room's next expiry.
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local out = {0, ''}
for _, conn in ipairs(gone) do
  local member = redis.call('HGET', KEYS[1], conn)
  local state = redis.call('HGET', KEYS[2], conn) or 'null'
  redis.call('HDEL', KEYS[1], conn)
  redis.call('HDEL', KEYS[2], conn)
  redis.call('ZREM', KEYS[3], conn)
  if member then
    table.insert(out, member)
    table.insert(out, state)
  end
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] then
  out[2] = first[2]
end
out[1] = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')
return out
