-- The first position appended at or after a second, for retention by age; forgets the clock
-- before it. KEYS: 1 clock, 2 seq; ARGV: 1 second
local first = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf', 'LIMIT', 0, 1)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if #first > 0 then
  return first[1]
end
-- Nothing was appended since: everything is older.
local seq = redis.call('GET', KEYS[2])
if not seq then
  return false
end
return string.format('%d', tonumber(seq) + 1)
