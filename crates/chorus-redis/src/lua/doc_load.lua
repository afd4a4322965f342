-- A document's stored state, created empty (with the given epoch) on first
-- use, its name joining the room's set of documents. Returns {epoch,
-- snapshot version, snapshot text, digest where the kept log starts, op,
-- op, ...}.
-- KEYS: meta (hash), log (list), snapshot (string), the room's documents (set)
-- ARGV: epoch for a new log, document name
local EMPTY = '0000000000000000'
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'head', 0, 'oldest', 0, 'snap', 0, 'digest', EMPTY, 'odigest', EMPTY)
  redis.call('SADD', KEYS[4], ARGV[2])
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'snap', 'odigest')
local out = {meta[1], meta[2], redis.call('GET', KEYS[3]) or '', meta[3] or EMPTY}
for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  table.insert(out, entry)
end
return out
