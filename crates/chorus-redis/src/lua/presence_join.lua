-- Adds or replaces a connection's presence entry; returns the live count.
-- KEYS: members (hash), states (hash), expiry (zset)
-- ARGV: connection, member JSON, state JSON, expires_at, now
-- (The caller then lowers the room's score in the rooms index: that key
-- lives outside the room's slot on a Cluster.)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return redis.call('ZCOUNT', KEYS[3], '(' .. ARGV[5], '+inf')
