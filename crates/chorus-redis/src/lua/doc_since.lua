-- The ops after `version`, or false when the log does not reach back that
-- far (or is another epoch): never a partial answer. A document that does
-- not exist is the empty text at version 0 in every epoch.
-- KEYS: meta, log. ARGV: epoch, version
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'oldest')
local version = tonumber(ARGV[2])
if not meta[1] then
  if version == 0 then
    return {}
  end
  return false
end
if meta[1] ~= ARGV[1] or version < tonumber(meta[3]) or version > tonumber(meta[2]) then
  return false
end
return redis.call('LRANGE', KEYS[2], version - tonumber(meta[3]), -1)
