-- Records the text at `version` and trims the log up to `trim_to` (never
-- past the snapshot), keeping the digest at the new start of the log;
-- forgets clients whose last op is trimmed away.
-- KEYS: meta, log, snapshot, clients. ARGV: epoch, version, text, trim_to, digest at trim_to
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'oldest', 'snap')
local version = tonumber(ARGV[2])
if meta[1] ~= ARGV[1] or version <= tonumber(meta[4]) or version > tonumber(meta[2]) then
  return 0
end
redis.call('SET', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[1], 'snap', version)
local oldest = tonumber(meta[3])
local trim = math.min(tonumber(ARGV[4]), version)
if trim > oldest then
  redis.call('LTRIM', KEYS[2], trim - oldest, -1)
  redis.call('HSET', KEYS[1], 'oldest', trim, 'odigest', ARGV[5])
  local clients = redis.call('HGETALL', KEYS[4])
  for i = 1, #clients, 2 do
    local v = tonumber(string.match(clients[i + 1], ':(%d+)$'))
    if v <= trim then
      redis.call('HDEL', KEYS[4], clients[i])
    end
  end
end
return 1
