-- Deletes a document: every key kept for it (meta, log, snapshot, clients'
-- last commits, users' undo histories and their revisions) and its name in
-- the room's set of documents, announced on the room's channel in the same
-- step. A node still holding the old incarnation finds no epoch to append
-- to, and an append past version 0 never recreates a document.
-- KEYS: meta, log, snapshot, clients, histories, revisions, the room's documents (set)
-- ARGV: document name, channel, publish command
-- Returns {epoch, head} of the deleted incarnation, or false when there was none.
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('SREM', KEYS[7], ARGV[1])
if not meta[1] then
  return false
end
redis.call(ARGV[3], ARGV[2], '{"kind":"doc_deleted","doc":' .. cjson.encode(ARGV[1]) .. ',"epoch":' .. cjson.encode(meta[1]) .. '}')
return {meta[1], meta[2]}
