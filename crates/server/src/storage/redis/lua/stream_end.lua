-- Ends an open stream with its chunks compacted (by the caller, from the chunks it read while
-- the stream's last position was ARGV[6]: if it moved since, the caller reads again).
-- KEYS: 1 the stream's record, 2 its chunks, 3 the owner's open streams, 4 the expiry index
-- ARGV: 1 id, 2 status, 3 result ('' for none), 4 compacted, 5 now (ms), 6 the last position read
-- Returns {'ok'}, {'missing'}, {'ended', status} or {'moved'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing'}
end
local record = redis.call('HMGET', KEYS[1], 'status', 'last', 'ttl')
if record[1] ~= 'open' then
  return {'ended', record[1]}
end
if record[2] ~= ARGV[6] then
  return {'moved'}
end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'compacted', ARGV[4], 'ended', ARGV[5])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'result', ARGV[3])
end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], string.format('%d', tonumber(ARGV[5]) + tonumber(record[3])), ARGV[1])
return {'ok'}
