-- Removes one room's entries expired at `now` and announces each leave, in
-- one step; each is returned by exactly one call, however many nodes sweep.
-- Each leave counts the members left after it.
-- KEYS: members, states, expiry, presence. ARGV: now, channel, publish command
-- Returns {earliest expiry left ('' if none), member, state, count, ...}
-- so the caller can point the rooms index at the room's next expiry.
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', ARGV[1])
local out = {''}
local epoch = redis.call('HGET', KEYS[4], 'epoch') or ''
local live = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[1], '+inf')
-- Entries of this sweep still to be announced count as members until then.
local waiting = #gone
for _, conn in ipairs(gone) do
  local member = redis.call('HGET', KEYS[1], conn)
  local state = redis.call('HGET', KEYS[2], conn) or 'null'
  redis.call('HDEL', KEYS[1], conn)
  redis.call('HDEL', KEYS[2], conn)
  redis.call('ZREM', KEYS[3], conn)
  waiting = waiting - 1
  if member then
    local count = live + waiting
    local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
    local user = cjson.decode(member)['user']['id']
    redis.call(ARGV[3], ARGV[2], '{"kind":"member_left","connection":' .. cjson.encode(conn) .. ',"user":' .. cjson.encode(user)
      .. ',"reason":"expired","count":' .. count .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
    table.insert(out, member)
    table.insert(out, state)
    table.insert(out, count)
  end
end
local first = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
if first[2] then
  out[1] = first[2]
elseif #gone > 0 then
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
end
return out
