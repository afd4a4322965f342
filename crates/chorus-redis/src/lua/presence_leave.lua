-- Removes an entry and hands it back with the live count after; false to
-- every caller but the one that removed it.
-- KEYS: members, states, expiry. ARGV: connection, now
-- (The rooms index may keep the room a while: a sweep that finds nothing
-- to expire sets it right.)
local member = redis.call('HGET', KEYS[1], ARGV[1])
if not member then
  return false
end
local state = redis.call('HGET', KEYS[2], ARGV[1]) or 'null'
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {member, state, redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')}
