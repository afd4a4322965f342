-- Replaces an entry's application state; 0 when the entry is gone.
-- KEYS: members, states. ARGV: connection, state JSON
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
