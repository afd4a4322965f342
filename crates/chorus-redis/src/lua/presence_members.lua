-- Live entries at `now`, with the room's presence stamp:
-- {epoch or false, seq, member, state, member, state, ...}.
-- KEYS: members, states, expiry, presence. ARGV: now
-- (append_live_members comes from live_members.lua, loaded before this.)
local p = redis.call('HMGET', KEYS[4], 'epoch', 'seq')
return append_live_members({p[1], p[2] or '0'}, ARGV[1])
