-- Every value of a room, versions and states read together, with the
-- room's values stamp.
-- KEYS: versions (hash), states (hash), meta (hash: epoch, seq)
-- Returns {epoch or false, seq, name, version, state, ...}.
local m = redis.call('HMGET', KEYS[3], 'epoch', 'seq')
local out = {m[1], m[2] or '0'}
local versions = redis.call('HGETALL', KEYS[1])
for i = 1, #versions, 2 do
  table.insert(out, versions[i])
  table.insert(out, versions[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], versions[i]) or 'null')
end
return out
