-- Removes one room's entries expired at `now`; each is returned by exactly
-- one call, however many nodes sweep. Returns {live count, member, state, ...}.
-- KEYS: members, states, expiry, rooms index. ARGV: now, room
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local out = {0}
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
-- Point the index at the room's earliest expiry now (or drop the room).
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] then
  redis.call('ZADD', KEYS[4], first[2], ARGV[2])
else
  redis.call('ZREM', KEYS[4], ARGV[2])
end
out[1] = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')
return out
