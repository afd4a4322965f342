-- Replaces an entry's application state and announces it, in one step;
-- 0 when the entry is gone, or expired at `now` and not swept yet: lists
-- read since leave it out, so its state would be announced for a member
-- they do not hold (as presence_refresh.lua refuses it).
-- KEYS: members, states, expiry, presence.
-- ARGV: connection, state JSON, channel, publish command, now
local at = redis.call('ZSCORE', KEYS[3], ARGV[1])
if not at or tonumber(at) <= tonumber(ARGV[5]) or redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local epoch = redis.call('HGET', KEYS[4], 'epoch') or ''
redis.call(ARGV[4], ARGV[3], '{"kind":"presence","connection":' .. cjson.encode(ARGV[1]) .. ',"state":' .. ARGV[2]
  .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
return 1
