-- Creates a document from an export: its text as the snapshot at `version`,
-- an empty log starting there with the given digest, and its name in the
-- room's set of documents; 0 and nothing changed when it exists.
-- KEYS: meta, snapshot, the room's documents (set)
-- ARGV: epoch, version, digest, text, changed (ms), document name
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'head', ARGV[2], 'oldest', ARGV[2], 'snap', ARGV[2], 'digest', ARGV[3], 'odigest', ARGV[3],
  'changed', ARGV[5])
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[6])
return 1
