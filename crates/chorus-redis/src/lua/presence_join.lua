-- Adds a connection's presence entry and announces it, in one step, unless
-- the room already holds `limit` live members. A retried join (the entry is
-- there and live) only pushes the expiry forward: it was announced the first
-- time. An entry that expired and was not swept yet is replaced and
-- announced: lists read since its expiry leave it out.
-- KEYS: members (hash), states (hash), expiry (zset), presence (hash: epoch, seq)
-- ARGV: connection, member JSON (without state), state JSON, expires_at, now,
--       limit, epoch for a new presence record, channel, publish command,
--       member JSON with its state (for the event)
-- Returns {'full'} or {'entered', epoch, seq, member, state, member, state, ...}
-- with the live members after the join (append_live_members comes from
-- live_members.lua, loaded before this).
-- (The caller then lowers the room's score in the rooms index: that key
-- lives outside the room's slot on a Cluster.)
local function entered()
  local p = redis.call('HMGET', KEYS[4], 'epoch', 'seq')
  return append_live_members({'entered', p[1], p[2]}, ARGV[5])
end
local at = redis.call('ZSCORE', KEYS[3], ARGV[1])
if at and tonumber(at) > tonumber(ARGV[5]) and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('ZADD', KEYS[3], 'XX', ARGV[4], ARGV[1])
  return entered()
end
if redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[5], '+inf') >= tonumber(ARGV[6]) then
  return {'full'}
end
if redis.call('HSETNX', KEYS[4], 'epoch', ARGV[7]) == 1 then
  redis.call('HSET', KEYS[4], 'seq', 0)
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local seq = redis.call('HINCRBY', KEYS[4], 'seq', 1)
local epoch = redis.call('HGET', KEYS[4], 'epoch')
local count = redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[5], '+inf')
redis.call(ARGV[9], ARGV[8], '{"kind":"member_joined","member":' .. ARGV[10] .. ',"count":' .. count
  .. ',"stamp":{"epoch":"' .. epoch .. '","seq":' .. seq .. '}}')
return entered()
