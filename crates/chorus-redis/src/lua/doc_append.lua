-- One commit: head == expected? append the op with (client, seq)
-- deduplication, bump the head, publish. O(1) whatever the document's size.
-- KEYS: meta (hash), log (list), clients (hash)
-- ARGV: epoch, expected head, client, seq, op JSON, document name, channel,
--       the committing node's id, the publish command (SPUBLISH on a Cluster)
--
-- Fairness: a node that lost a race claims the next turn for a moment
-- (CLAIM_MS); meanwhile other nodes' appends are answered as conflicts with
-- nothing missed, so a node with a steady stream of commits cannot starve
-- another one forever.
-- Returns {outcome, number}: committed/version, duplicate/version,
-- stale/last seq, epoch/current epoch; or {'conflict', head, op, op, ...}
-- with the ops after the expected version, so the caller can transform
-- and retry without another round trip.
local CLAIM_MS = 20
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'oldest', 'turn', 'turn_until')
if meta[1] ~= ARGV[1] then
  return {'epoch', meta[1] or ''}
end
local last = redis.call('HGET', KEYS[3], ARGV[3])
if last then
  local seq, version = string.match(last, '^(%d+):(%d+)$')
  if tonumber(seq) == tonumber(ARGV[4]) then
    return {'duplicate', version}
  end
  if tonumber(seq) > tonumber(ARGV[4]) then
    return {'stale', seq}
  end
end
local head = tonumber(meta[2])
local expected = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local claimed = meta[4] and meta[4] ~= ARGV[8] and tonumber(meta[5]) > now
if head ~= expected or claimed then
  if not claimed then
    redis.call('HSET', KEYS[1], 'turn', ARGV[8], 'turn_until', now + CLAIM_MS)
  end
  local out = {'conflict', meta[2]}
  local oldest = tonumber(meta[3])
  if expected >= oldest and expected < head then
    for _, entry in ipairs(redis.call('LRANGE', KEYS[2], expected - oldest, -1)) do
      table.insert(out, entry)
    end
  end
  return out
end
local version = head + 1
local entry = '{"version":' .. version .. ',"client":' .. cjson.encode(ARGV[3]) .. ',"seq":' .. ARGV[4] .. ',"op":' .. ARGV[5] .. '}'
redis.call('RPUSH', KEYS[2], entry)
redis.call('HSET', KEYS[1], 'head', version)
if meta[4] == ARGV[8] then
  redis.call('HDEL', KEYS[1], 'turn', 'turn_until')
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4] .. ':' .. version)
redis.call(ARGV[9], ARGV[7], '{"kind":"doc_op","doc":' .. cjson.encode(ARGV[6]) .. ',"entry":' .. entry .. '}')
return {'committed', tostring(version)}
