-- Appends a control message for every node to the feed; it takes a sequence number but belongs
-- to no stream, so no client ever receives it.
-- KEYS: 1 seq, 2 floor, 3 feed; ARGV: 1 feed length kept, 2 message, 3 the newest position the
-- calling node has seen (the sequence restarts as in append.lua when Redis lost data)
local seen = tonumber(ARGV[3])
local current = redis.call('GET', KEYS[1])
if not current or tonumber(current) < seen then
  local now = redis.call('TIME')
  local start = now[1] .. string.format('%06d', tonumber(now[2]))
  if tonumber(start) <= seen then
    start = string.format('%d', seen + 1)
  end
  redis.call('SET', KEYS[1], start)
  redis.call('SET', KEYS[2], start)
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], string.format('%d-0', seq), 'c', ARGV[2])
return seq
