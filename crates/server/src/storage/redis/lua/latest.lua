-- The newest sequence number, starting the sequence if Redis has none (see append.lua).
-- KEYS: 1 seq, 2 floor
if redis.call('EXISTS', KEYS[1]) == 0 then
  local now = redis.call('TIME')
  local start = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[1], start)
  redis.call('SET', KEYS[2], start)
end
return redis.call('GET', KEYS[1])
