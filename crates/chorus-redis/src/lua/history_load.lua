-- A user's stored undo history of a document, read in one step:
-- {revision, saved} or false.
-- KEYS: histories (hash: user -> saved), revisions (hash: user -> "rev:version:token")
-- ARGV: user
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then
  return false
end
return {string.match(rec, '^(%d+):'), redis.call('HGET', KEYS[1], ARGV[1]) or ''}
