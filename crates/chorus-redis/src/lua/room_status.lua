-- Where a room stands, in one look: its presence stamp, who is live at
-- `now` (how many, and the XOR of the first 32 bits of each connection id's
-- SHA-1, as chorus_store::LiveMembers computes it), its values stamp and
-- what its values hold (how many, and the XOR of the first 32 bits of the
-- SHA-1 of each one's `LEN:NAME:VERSION:STATE`, as
-- chorus_store::ValuesContent computes it), and the heads of the documents
-- asked about.
-- KEYS: presence (hash), members (hash), expiry (zset), values meta (hash),
--       value versions (hash), value states (hash), then each document's
--       meta
-- ARGV: now
-- Returns {presence epoch or false, seq, live count, fingerprint (8 hex
--          digits), values epoch or false, seq, value count, fingerprint
--          (8 hex digits), then per document: epoch or false, head, digest}.
local p = redis.call('HMGET', KEYS[1], 'epoch', 'seq')
local v = redis.call('HMGET', KEYS[4], 'epoch', 'seq')
local function part(s)
  return tonumber(string.sub(redis.sha1hex(s), 1, 8), 16)
end
-- Live as the members script lists them: unexpired and in the members hash.
local live, fingerprint = 0, 0
for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. ARGV[1], '+inf')) do
  if redis.call('HEXISTS', KEYS[2], conn) == 1 then
    live = live + 1
    fingerprint = bit.bxor(fingerprint, part(conn))
  end
end
-- Values as the values script reads them.
local count, content = 0, 0
local versions = redis.call('HGETALL', KEYS[5])
for i = 1, #versions, 2 do
  local name = versions[i]
  local state = redis.call('HGET', KEYS[6], name) or 'null'
  count = count + 1
  content = bit.bxor(content, part(#name .. ':' .. name .. ':' .. versions[i + 1] .. ':' .. state))
end
local out = {p[1], p[2] or '0', live, bit.tohex(fingerprint), v[1], v[2] or '0', count, bit.tohex(content)}
for i = 7, #KEYS do
  local d = redis.call('HMGET', KEYS[i], 'epoch', 'head', 'digest')
  table.insert(out, d[1])
  table.insert(out, d[2] or '0')
  table.insert(out, d[3] or '')
end
return out
