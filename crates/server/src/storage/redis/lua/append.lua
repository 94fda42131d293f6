-- Appends a batch of events to the shared log, atomically.
-- KEYS: 1 seq, 2 floor, 3 feed, 4 stream set, 5 clock, 6 clock second, 7 forgotten,
--       8 Mercure ids (a sorted set: id by position)
-- ARGV: 1 stream key prefix, 2 events kept per stream, 3 feed length kept,
--       4 the newest position the calling node has seen,
--       then per event: stream count n, n encoded stream keys, kind, data, time (µs),
--       Mercure fields (JSON, or empty), Mercure id (or empty)
-- Returns the sequence number of each event, in order.
ensure_sequence(KEYS[1], KEYS[2], tonumber(ARGV[4]))
local max_len = tonumber(ARGV[2])
local forgotten = redis.call('GET', KEYS[7])
local out = {}
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  local streams = {}
  for j = 1, n do
    streams[j] = ARGV[i + j]
  end
  local kind, data, time = ARGV[i + n + 1], ARGV[i + n + 2], ARGV[i + n + 3]
  local mercure, mercure_id = ARGV[i + n + 4], ARGV[i + n + 5]
  i = i + n + 6
  local seq = redis.call('INCR', KEYS[1])
  local id = string.format('%d-0', seq)
  local joined = table.concat(streams, '\n')
  local fields = {'s', joined, 'k', kind, 'd', data, 't', time}
  if mercure ~= '' then
    fields[#fields + 1] = 'm'
    fields[#fields + 1] = mercure
    redis.call('ZADD', KEYS[8], seq, mercure_id)
  end
  for _, stream in ipairs(streams) do
    local key = ARGV[1] .. stream
    local fresh = redis.call('EXISTS', key) == 0
    redis.call('XADD', key, id, unpack(fields))
    redis.call('SADD', KEYS[4], stream)
    -- A stream retention forgot comes back knowing it cannot replay from before then.
    if fresh and forgotten and tonumber(forgotten) > 0 then
      redis.call('XSETID', key, id, 'ENTRIESADDED', 1, 'MAXDELETEDID', forgotten .. '-0')
    end
    -- Trimmed with XDEL, which (unlike XADD's MAXLEN) records the newest removed id, so a replay
    -- from before it is refused.
    local excess = redis.call('XLEN', key) - max_len
    if excess > 0 then
      for _, old in ipairs(redis.call('XRANGE', key, '-', '+', 'COUNT', excess)) do
        redis.call('XDEL', key, old[1])
      end
    end
  end
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], id, unpack(fields))
  out[#out + 1] = seq
end
-- The first event of each second, so retention by age can find where a second begins.
if #out > 0 then
  local second = redis.call('TIME')[1]
  if redis.call('GET', KEYS[6]) ~= second then
    redis.call('SET', KEYS[6], second)
    redis.call('ZADD', KEYS[5], second, string.format('%d', out[1]))
  end
end
return out
