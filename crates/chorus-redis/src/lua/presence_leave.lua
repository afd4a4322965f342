-- Removes an entry and announces the leave, in one step; hands the entry
-- back with the live count after to the one caller that removed it, false
-- to every other. The keys of a room left empty are deleted, so the next
-- join starts a new presence epoch.
-- KEYS: members, states, expiry, presence
-- ARGV: connection, now, reason, channel, publish command
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
local count = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[2], '+inf')
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local epoch = redis.call('HGET', KEYS[4], 'epoch') or ''
local user = cjson.decode(member)['user']['id']
redis.call(ARGV[5], ARGV[4], '{"kind":"member_left","connection":' .. cjson.encode(ARGV[1]) .. ',"user":' .. cjson.encode(user)
  .. ',"reason":"' .. ARGV[3] .. '","count":' .. count .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
if redis.call('ZCARD', KEYS[3]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end
return {member, state, count}
