-- Forgets clients not seen since a cutoff, with their streams. Checked and removed in one step,
-- so a client another node marks as seen meanwhile is kept.
-- KEYS: 1 clients, 2 stream set; ARGV: 1 cutoff (ms), 2 stream key prefix, 3 most to remove
-- Returns how many were removed.
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, client in ipairs(expired) do
  local stream = 'c:' .. client
  redis.call('DEL', ARGV[2] .. stream)
  redis.call('SREM', KEYS[2], stream)
  redis.call('ZREM', KEYS[1], client)
end
return #expired
