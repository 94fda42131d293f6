-- The newest sequence number, starting the sequence where Redis has none or one behind what
-- the calling node has seen (see append.lua).
-- KEYS: 1 seq, 2 floor; ARGV: 1 the newest position the calling node has seen
local seen = tonumber(ARGV[1])
local current = redis.call('GET', KEYS[1])
if not current or tonumber(current) < seen then
  local now = redis.call('TIME')
  local start = now[1] .. string.format('%06d', tonumber(now[2]))
  if tonumber(start) <= seen then
    start = string.format('%d', seen + 1)
  end
  redis.call('SET', KEYS[1], start)
  redis.call('SET', KEYS[2], start)
  return start
end
return current
