-- Writes a user's undo history if it is still at the expected revision
-- (0: none stored); 1 when written, by this call or by an earlier one with
-- the same token (whose answer was lost), else 0; -1 (nothing written) when
-- the document is not the incarnation named (deleted, or created again).
-- KEYS: histories, revisions, the document's meta (hash).
-- ARGV: user, expected revision, token, saved, epoch
if redis.call('HGET', KEYS[3], 'epoch') ~= ARGV[5] then
  return -1
end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
local rev, token = '0', nil
if rec then
  rev, token = string.match(rec, '^(%d+):%d+:(.*)$')
end
if rev ~= ARGV[2] then
  if token == ARGV[3] then
    return 1
  end
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], string.format('%d', tonumber(rev) + 1) .. ':0:' .. ARGV[3])
return 1
