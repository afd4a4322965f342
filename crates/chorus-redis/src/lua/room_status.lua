-- Where a room stands, in one look: its presence and values stamps and
-- the heads of the documents asked about.
-- KEYS: presence (hash), values meta (hash), then each document's meta
-- Returns {presence epoch or false, seq, values epoch or false, seq,
--          then per document: epoch or false, head, digest}.
local p = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local v = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
local out = {p[1], p[2] or '0', v[1], v[2] or '0'}
for i = 3, #KEYS do
  local d = redis.call('HMGET', KEYS[i], 'epoch', 'head', 'digest')
  table.insert(out, d[1])
  table.insert(out, d[2] or '0')
  table.insert(out, d[3] or '')
end
return out
