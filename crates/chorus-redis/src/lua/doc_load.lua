-- A document's stored state, created empty (with the given epoch) on first
-- use. Returns {epoch, snapshot version, snapshot text, op, op, ...}.
-- KEYS: meta (hash), log (list), snapshot (string). ARGV: epoch for a new log
if redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], 'head', 0, 'oldest', 0, 'snap', 0)
end
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'snap')
local out = {meta[1], meta[2], redis.call('GET', KEYS[3]) or ''}
for _, entry in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
  table.insert(out, entry)
end
return out
