-- Adds or replaces a connection's presence entry; returns the live count.
-- KEYS: members (hash), states (hash), expiry (zset), rooms index (zset)
-- ARGV: connection, member JSON, state JSON, expires_at, now, room
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
-- The index holds, per room, a time at or before its earliest expiry.
redis.call('ZADD', KEYS[4], 'LT', ARGV[4], ARGV[6])
return redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[5], '+inf')
