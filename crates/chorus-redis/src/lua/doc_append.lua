-- One commit: is the head the expected version, with the expected digest?
-- Then append the op with (client, seq) deduplication, bump the head,
-- publish; with an undo history, write it too if it is still at the
-- revision the undo was computed from. O(1) whatever the document's size.
-- A document that is not there (discarded while a replica of it was open)
-- is created again by an op at version 0, in the epoch its writer loaded
-- (and added to the room's set of documents), once the op commits; an op
-- past 0 never creates one: it was made on a replica of a deleted
-- incarnation.
-- KEYS: meta (hash), log (list), clients (hash), histories (hash), revisions (hash),
--       the room's documents (set)
-- ARGV: epoch, expected head, expected digest, client, seq, op JSON, digest
--       after the op, document name, channel, the committing node's id, the
--       publish command (SPUBLISH on a Cluster); for an undo or redo also
--       user, expected history revision, token, saved history
--
-- Fairness: a node that lost a race claims the next turn for a moment
-- (CLAIM_MS); meanwhile other nodes' appends are answered as conflicts with
-- nothing missed, so a node with a steady stream of commits cannot starve
-- another one forever.
-- Returns {outcome, ...}: committed/version/at, duplicate/version,
-- stale/last seq, epoch/current epoch, diverged, history; or
-- {'conflict', head, op, op, ...} with the ops after the expected version,
-- so the caller can transform and retry without another round trip.
local meta, create, epoch = doc_meta()
if not meta then
  return {'epoch', epoch}
end
local user = ARGV[12]
local rev = '0'
if user then
  local rec = redis.call('HGET', KEYS[5], user)
  local version, token = '0', nil
  if rec then
    rev, version, token = string.match(rec, '^(%d+):(%d+):(.*)$')
  end
  if rev ~= ARGV[13] then
    if token == ARGV[14] then
      return {'duplicate', version}
    end
    return {'history'}
  end
end
local last = redis.call('HGET', KEYS[3], ARGV[4])
if last then
  local seq, version = string.match(last, '^(%d+):(%d+)$')
  local order = seq_cmp(seq, ARGV[5])
  if order == 0 then
    return {'duplicate', version}
  end
  if order > 0 then
    return {'stale', seq}
  end
end
local head = tonumber(meta[2])
local expected = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local claimed = meta[4] and meta[4] ~= ARGV[10] and tonumber(meta[5]) > now
if head ~= expected or claimed then
  if not claimed then
    redis.call('HSET', KEYS[1], 'turn', ARGV[10], 'turn_until', now + CLAIM_MS)
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
if meta[6] ~= ARGV[3] then
  return {'diverged'}
end
local version = string.format('%d', head + 1)
local at = string.format('%d', now)
local entry = '{"version":' .. version .. ',"client":' .. cjson.encode(ARGV[4]) .. ',"seq":' .. ARGV[5] .. ',"op":' .. ARGV[6]
  .. ',"at":' .. at .. ',"digest":"' .. ARGV[7] .. '"}'
if create then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'oldest', 0, 'snap', 0, 'odigest', EMPTY)
  redis.call('SADD', KEYS[6], ARGV[8])
end
redis.call('RPUSH', KEYS[2], entry)
redis.call('HSET', KEYS[1], 'head', version, 'digest', ARGV[7], 'changed', at)
if meta[4] == ARGV[10] then
  redis.call('HDEL', KEYS[1], 'turn', 'turn_until')
end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5] .. ':' .. version)
if user then
  redis.call('HSET', KEYS[4], user, ARGV[15])
  redis.call('HSET', KEYS[5], user, string.format('%d', tonumber(rev) + 1) .. ':' .. version .. ':' .. ARGV[14])
end
redis.call(ARGV[11], ARGV[9], '{"kind":"doc_op","doc":' .. cjson.encode(ARGV[8]) .. ',"entry":' .. entry .. '}')
return {'committed', version, at}
