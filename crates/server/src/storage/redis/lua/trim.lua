-- Drops the events before a position from some streams; forgets streams left empty, recording
-- that a missing stream cannot be replayed from before that position.
-- KEYS: 1 stream set, 2 forgotten; ARGV: 1 stream key prefix, 2 first position kept, 3.. streams
local kept = ARGV[2] .. '-0'
local forgotten = tonumber(ARGV[2]) - 1
local dropped = 0
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  dropped = dropped + redis.call('XTRIM', key, 'MINID', kept)
  if redis.call('XLEN', key) == 0 then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], ARGV[i])
    if tonumber(redis.call('GET', KEYS[2]) or '0') < forgotten then
      redis.call('SET', KEYS[2], string.format('%d', forgotten))
    end
  end
end
return dropped
