-- One change to a shared value: version == expected? store the new state,
-- bump the version and the room's values sequence, publish. The node
-- computed the state (the CRDT logic lives in Chorus's core); this only
-- serialises the writers. A write repeated after its answer was lost is
-- found by its token instead of being refused (or applied twice).
-- KEYS: versions (hash), states (hash), tokens (hash), meta (hash: epoch, seq)
-- ARGV: name, expected version (0: absent), state JSON, token, epoch for a
--       new values record, channel, publish command
-- Returns {'written', version} or {'conflict'[, version, state]}.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current ~= tonumber(ARGV[2]) then
  if current == 0 then
    return {'conflict'}
  end
  if redis.call('HGET', KEYS[3], ARGV[1]) == ARGV[4] then
    return {'written', string.format('%d', current)}
  end
  return {'conflict', string.format('%d', current), redis.call('HGET', KEYS[2], ARGV[1])}
end
local version = current + 1
redis.call('HSET', KEYS[1], ARGV[1], version)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
if redis.call('HSETNX', KEYS[4], 'epoch', ARGV[5]) == 1 then
  redis.call('HSET', KEYS[4], 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local epoch = redis.call('HGET', KEYS[4], 'epoch')
redis.call(ARGV[7], ARGV[6], '{"kind":"value","name":' .. cjson.encode(ARGV[1]) .. ',"version":' .. string.format('%d', version)
  .. ',"state":' .. ARGV[3] .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
return {'written', string.format('%d', version)}
