-- Discards a document nobody edited: if it is still the incarnation named,
-- at version 0, every key kept for it goes, and its name leaves the room's
-- set of documents; when it is not there at all, undo histories saved for
-- it meanwhile go too. 1 when a document was discarded, else 0.
-- KEYS: meta, log, snapshot, clients, histories, revisions, the room's documents (set)
-- ARGV: epoch, document name
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head')
if meta[1] and (meta[1] ~= ARGV[1] or meta[2] ~= '0') then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SREM', KEYS[7], ARGV[2])
return meta[1] and 1 or 0
