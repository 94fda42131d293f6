-- Forgets the clients seen longest ago, with their streams, until at most a number remain.
-- KEYS: 1 clients, 2 stream set; ARGV: 1 clients to keep, 2 stream key prefix, 3 most to remove
-- Returns how many were removed.
local excess = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[1])
if excess <= 0 then
  return 0
end
excess = math.min(excess, tonumber(ARGV[3]))
local oldest = redis.call('ZRANGE', KEYS[1], 0, excess - 1)
for _, client in ipairs(oldest) do
  local stream = 'c:' .. client
  redis.call('DEL', ARGV[2] .. stream)
  redis.call('SREM', KEYS[2], stream)
  redis.call('ZREM', KEYS[1], client)
end
return #oldest
