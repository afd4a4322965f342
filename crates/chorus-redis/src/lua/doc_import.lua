-- Creates a document from an export: its text as the snapshot at `version`,
-- an empty log starting there with the given digest, and its name in the
-- room's set of documents, in place of one nobody edited; 0 and nothing
-- changed when the document has an op.
-- KEYS: meta, snapshot, the room's documents (set)
-- ARGV: epoch, version, digest, text, changed (ms), document name
local head = redis.call('HGET', KEYS[1], 'head')
if head and head ~= '0' then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'head', ARGV[2], 'oldest', ARGV[2], 'snap', ARGV[2], 'digest', ARGV[3], 'odigest', ARGV[3],
  'changed', ARGV[5])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[6])
return 1
