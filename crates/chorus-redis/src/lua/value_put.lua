-- One change to a shared value: version == expected? store the new state,
-- bump the version, publish. The node computed the state (the CRDT logic
-- lives in Chorus's core); this only serialises the writers.
-- KEYS: versions (hash), states (hash)
-- ARGV: name, expected version (0: absent), state JSON, channel, publish command
-- Returns {'written', version} or {'conflict'[, version, state]}.
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if current ~= tonumber(ARGV[2]) then
  if current == 0 then
    return {'conflict'}
  end
  return {'conflict', tostring(current), redis.call('HGET', KEYS[2], ARGV[1])}
end
local version = current + 1
redis.call('HSET', KEYS[1], ARGV[1], version)
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call(ARGV[5], ARGV[4], '{"kind":"value","name":' .. cjson.encode(ARGV[1]) .. ',"version":' .. version .. ',"state":' .. ARGV[3] .. '}')
return {'written', tostring(version)}
