-- One commit: head == expected? append the op with (client, seq)
-- deduplication, bump the head, publish. O(1) whatever the document's size.
-- KEYS: meta (hash), log (list), clients (hash)
-- ARGV: epoch, expected head, client, seq, op JSON, document name, channel
-- Returns {outcome, number}: committed/version, duplicate/version,
-- conflict/head, stale/last seq, epoch/current epoch.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head')
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
if head ~= tonumber(ARGV[2]) then
  return {'conflict', meta[2]}
end
local version = head + 1
local entry = '{"version":' .. version .. ',"client":' .. cjson.encode(ARGV[3]) .. ',"seq":' .. ARGV[4] .. ',"op":' .. ARGV[5] .. '}'
redis.call('RPUSH', KEYS[2], entry)
redis.call('HSET', KEYS[1], 'head', version)
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4] .. ':' .. version)
redis.call('PUBLISH', ARGV[7], '{"kind":"doc_op","doc":' .. cjson.encode(ARGV[6]) .. ',"entry":' .. entry .. '}')
return {'committed', tostring(version)}
