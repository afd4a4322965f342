-- Pushes an entry's expiry forward; 0 when the entry is gone.
-- KEYS: members, expiry. ARGV: connection, expires_at
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
