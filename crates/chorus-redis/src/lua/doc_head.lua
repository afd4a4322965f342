-- Shared by doc_append.lua and doc_append_group.lua (prepended to them when
-- they are loaded): where a document's log stands, and how commits compare.
-- KEYS[1]: the document's meta (hash); ARGV[1]: the epoch the committer
-- loaded; ARGV[2]: the head it expects.
local CLAIM_MS = 20
local EMPTY = '0000000000000000'

-- Sequence numbers are u64s, beyond what a Lua number holds exactly: they
-- are compared as decimal strings.
local function seq_cmp(a, b)
  if #a ~= #b then
    return #a < #b and -1 or 1
  end
  if a == b then
    return 0
  end
  return a < b and -1 or 1
end

-- Returns meta {epoch, head, oldest, turn, turn_until, digest} and whether
-- the commit creates the document, or nil and the epoch to answer with. A
-- document that is not there (discarded while a replica of it was open) is
-- created by a commit expecting version 0, in the epoch its writer loaded;
-- one past 0 never creates it: it was made on a replica of a deleted
-- incarnation.
local function doc_meta()
  local meta = redis.call('HMGET', KEYS[1], 'epoch', 'head', 'oldest', 'turn', 'turn_until', 'digest')
  if not meta[1] then
    if ARGV[2] ~= '0' then
      return nil, false, ''
    end
    return {ARGV[1], '0', '0', false, false, EMPTY}, true
  end
  if meta[1] ~= ARGV[1] then
    return nil, false, meta[1]
  end
  return meta, false
end
