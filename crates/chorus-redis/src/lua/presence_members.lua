-- Live entries at `now`, with the room's presence stamp:
-- {epoch or false, seq, member, state, member, state, ...}.
-- KEYS: members, states, expiry, presence. ARGV: now
local p = redis.call('HMGET', KEYS[4], 'epoch', 'seq')
local out = {p[1], p[2] or '0'}
for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  local member = redis.call('HGET', KEYS[1], conn)
  if member then
    table.insert(out, member)
    table.insert(out, redis.call('HGET', KEYS[2], conn) or 'null')
  end
end
return out
