-- Replaces an entry's application state and announces it, in one step;
-- 0 when the entry is gone.
-- KEYS: members, states, presence. ARGV: connection, state JSON, channel, publish command
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local seq = redis.call('HINCRBY', KEYS[3], 'seq', 1)
local epoch = redis.call('HGET', KEYS[3], 'epoch') or ''
redis.call(ARGV[4], ARGV[3], '{"kind":"presence","connection":' .. cjson.encode(ARGV[1]) .. ',"state":' .. ARGV[2]
  .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
return 1
