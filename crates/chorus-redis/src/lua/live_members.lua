-- Shared by the scripts that answer with a room's members (prepended to
-- them when they are loaded): appends each entry live at `now` to `out` as
-- member, state (the state 'null' when none was set).
-- KEYS: members (hash), states (hash), expiry (zset), as in those scripts.
local function append_live_members(out, now)
  for _, conn in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '(' .. now, '+inf')) do
    local member = redis.call('HGET', KEYS[1], conn)
    if member then
      table.insert(out, member)
      table.insert(out, redis.call('HGET', KEYS[2], conn) or 'null')
    end
  end
  return out
end
