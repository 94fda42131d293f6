-- Creates a response stream unless its owner holds too many open ones.
-- KEYS: 1 the stream's record, 2 the owner's open streams, 3 the expiry index
-- ARGV: 1 id, 2 kind, 3 owner, 4 user ('' for none), 5 private (1/0), 6 ttl (ms),
--       7 now (ms), 8 most open streams
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[8]) then
  return 0
end
redis.call('HSET', KEYS[1], 'kind', ARGV[2], 'owner', ARGV[3], 'user', ARGV[4],
  'private', ARGV[5], 'ttl', ARGV[6], 'created', ARGV[7], 'touched', ARGV[7],
  'status', 'open', 'chunks', '0', 'bytes', '0', 'last', '0')
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[3], string.format('%d', tonumber(ARGV[7]) + tonumber(ARGV[6])), ARGV[1])
return 1
