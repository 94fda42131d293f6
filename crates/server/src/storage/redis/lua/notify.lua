-- Stores a notification in a user's inbox, keeping the newest `keep`.
-- KEYS: 1 notification id counter, 2 all ids, 3 unread ids, 4 items
-- ARGV: 1 item (JSON), 2 keep
-- Returns the new id.
local id = redis.call('INCR', KEYS[1])
local member = string.format('%d', id)
redis.call('HSET', KEYS[4], member, ARGV[1])
redis.call('ZADD', KEYS[2], id, member)
redis.call('ZADD', KEYS[3], id, member)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[2])
if excess > 0 then
  local oldest = redis.call('ZRANGE', KEYS[2], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, excess - 1)
  for _, old in ipairs(oldest) do
    redis.call('ZREM', KEYS[3], old)
    redis.call('HDEL', KEYS[4], old)
  end
end
return id
