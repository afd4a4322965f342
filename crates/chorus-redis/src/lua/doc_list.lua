-- The heads of the documents named, in one look: per document its epoch
-- (false when it is gone), head and time of the last change.
-- KEYS: each document's meta
local out = {}
for i = 1, #KEYS do
  local d = redis.call('HMGET', KEYS[i], 'epoch', 'head', 'changed')
  table.insert(out, d[1])
  table.insert(out, d[2] or '0')
  table.insert(out, d[3] or '0')
end
return out
