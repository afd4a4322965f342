-- Every value of a room, versions and states read together.
-- KEYS: versions (hash), states (hash). Returns {name, version, state, ...}.
local out = {}
local versions = redis.call('HGETALL', KEYS[1])
for i = 1, #versions, 2 do
  table.insert(out, versions[i])
  table.insert(out, versions[i + 1])
  table.insert(out, redis.call('HGET', KEYS[2], versions[i]) or 'null')
end
return out
