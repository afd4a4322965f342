-- Live entries at `now` as {member, state, member, state, ...}.
-- KEYS: members, states, expiry. ARGV: now
local live = redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')
local out = {}
for _, conn in ipairs(live) do
  local member = redis.call('HGET', KEYS[1], conn)
  if member then
    table.insert(out, member)
    table.insert(out, redis.call('HGET', KEYS[2], conn) or 'null')
  end
end
return out
