-- Appends chunks to an open stream, all or none, within its limits.
-- KEYS: 1 the stream's record, 2 its chunks (score: position; member: 'position:data'),
--       3 the expiry index
-- ARGV: 1 id, 2 now (ms), 3 most chunks, 4 most bytes, 5 count, then per chunk: how far it
--       moves the position, its data
-- Returns {'ok', last, chunks}, {'missing'}, {'ended', status} or {'long'}.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'missing'}
end
local record = redis.call('HMGET', KEYS[1], 'status', 'chunks', 'bytes', 'last', 'ttl')
if record[1] ~= 'open' then
  return {'ended', record[1]}
end
local chunks, bytes, last = tonumber(record[2]), tonumber(record[3]), tonumber(record[4])
local count = tonumber(ARGV[5])
local added = 0
for i = 0, count - 1 do
  added = added + string.len(ARGV[7 + 2 * i])
end
if chunks + count > tonumber(ARGV[3]) or bytes + added > tonumber(ARGV[4]) then
  return {'long'}
end
for i = 0, count - 1 do
  last = last + tonumber(ARGV[6 + 2 * i])
  local position = string.format('%d', last)
  redis.call('ZADD', KEYS[2], position, position .. ':' .. ARGV[7 + 2 * i])
end
chunks = chunks + count
redis.call('HSET', KEYS[1], 'chunks', string.format('%d', chunks),
  'bytes', string.format('%d', bytes + added), 'last', string.format('%d', last),
  'touched', ARGV[2])
redis.call('ZADD', KEYS[3], string.format('%d', tonumber(ARGV[2]) + tonumber(record[5])), ARGV[1])
return {'ok', string.format('%d', last), string.format('%d', chunks)}
