-- A group of commits to one document in one step: each op as doc_append.lua
-- would append it, expecting the head the ones before it leave, stopping at
-- the first that is not committed (so a prefix of the group is committed).
-- The log, the head and the clients are written once for the whole group,
-- and the group is published as one message naming the committing node
-- (the nodes hand its ops to their rooms one by one, in order; the
-- committing node's rooms apply them from this answer instead). Undo
-- commits (with a history) go through doc_append.lua alone. A document that is not there is created
-- by a group expecting version 0, as doc_append.lua creates it.
-- KEYS: meta (hash), log (list), clients (hash), the room's documents (set)
-- ARGV: epoch, expected head, expected digest, document name, channel, the
--       committing node's id, the publish command (SPUBLISH on a Cluster);
--       then per op: client, seq, op JSON, digest after the op
--
-- Returns one reply per op looked at, each as doc_append.lua's:
-- {'committed', version, at}, ... and at most one last other outcome.
local FIXED = 7

local meta, create, epoch = doc_meta()
if not meta then
  return {{'epoch', epoch}}
end
local head = tonumber(meta[2])
local digest = meta[6]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local at = string.format('%d', now)
local out, entries, clients = {}, {}, {}
-- (client, seq:version) written by this group, for deduplication inside it.
local written = {}
local count = (#ARGV - FIXED) / 4
-- Every submitter's last (seq:version), in one command for the group.
local names = {}
for i = 0, count - 1 do
  names[i + 1] = ARGV[FIXED + 1 + 4 * i]
end
local stored = redis.call('HMGET', KEYS[3], unpack(names))
for i = 0, count - 1 do
  local client, seq, op, after = ARGV[FIXED + 1 + 4 * i], ARGV[FIXED + 2 + 4 * i], ARGV[FIXED + 3 + 4 * i], ARGV[FIXED + 4 + 4 * i]
  local last = written[client] or stored[i + 1]
  if last then
    local last_seq, version = string.match(last, '^(%d+):(%d+)$')
    local order = seq_cmp(last_seq, seq)
    if order == 0 then
      table.insert(out, {'duplicate', version})
      break
    end
    if order > 0 then
      table.insert(out, {'stale', last_seq})
      break
    end
  end
  if i == 0 then
    local expected = tonumber(ARGV[2])
    local claimed = meta[4] and meta[4] ~= ARGV[6] and tonumber(meta[5]) > now
    if head ~= expected or claimed then
      if not claimed then
        redis.call('HSET', KEYS[1], 'turn', ARGV[6], 'turn_until', now + CLAIM_MS)
      end
      local conflict = {'conflict', meta[2]}
      local oldest = tonumber(meta[3])
      if expected >= oldest and expected < head then
        for _, entry in ipairs(redis.call('LRANGE', KEYS[2], expected - oldest, -1)) do
          table.insert(conflict, entry)
        end
      end
      table.insert(out, conflict)
      break
    end
    if digest ~= ARGV[3] then
      table.insert(out, {'diverged'})
      break
    end
  end
  local version = string.format('%d', head + 1)
  table.insert(entries, '{"version":' .. version .. ',"client":' .. cjson.encode(client) .. ',"seq":' .. seq .. ',"op":' .. op
    .. ',"at":' .. at .. ',"digest":"' .. after .. '"}')
  written[client] = seq .. ':' .. version
  table.insert(clients, client)
  table.insert(clients, written[client])
  head = head + 1
  digest = after
  table.insert(out, {'committed', version, at})
end
if #entries > 0 then
  if create then
    redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'oldest', 0, 'snap', 0, 'odigest', EMPTY)
    redis.call('SADD', KEYS[4], ARGV[4])
  end
  redis.call('RPUSH', KEYS[2], unpack(entries))
  redis.call('HSET', KEYS[1], 'head', string.format('%d', head), 'digest', digest, 'changed', at)
  if meta[4] == ARGV[6] then
    redis.call('HDEL', KEYS[1], 'turn', 'turn_until')
  end
  redis.call('HSET', KEYS[3], unpack(clients))
  redis.call(ARGV[7], ARGV[5], '{"kind":"doc_ops","node":' .. cjson.encode(ARGV[6]) .. ',"doc":' .. cjson.encode(ARGV[4])
    .. ',"entries":[' .. table.concat(entries, ',') .. ']}')
end
return out
