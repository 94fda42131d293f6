-- Drops the events before a position from some streams; forgets streams left empty, recording
-- that a missing stream cannot be replayed from before that position. XDEL, unlike XTRIM,
-- records the newest removed id (`max-deleted-entry-id`), which replays check.
-- KEYS: 1 stream set, 2 forgotten; ARGV: 1 stream key prefix, 2 first position kept, 3.. streams
local kept = ARGV[2] .. '-0'
local forgotten = tonumber(ARGV[2]) - 1
local dropped = 0
for i = 3, #ARGV do
  local key = ARGV[1] .. ARGV[i]
  while true do
    local old = redis.call('XRANGE', key, '-', '(' .. kept, 'COUNT', 500)
    if #old == 0 then
      break
    end
    for _, entry in ipairs(old) do
      dropped = dropped + redis.call('XDEL', key, entry[1])
    end
  end
  if redis.call('XLEN', key) == 0 then
    redis.call('DEL', key)
    redis.call('SREM', KEYS[1], ARGV[i])
    if tonumber(redis.call('GET', KEYS[2]) or '0') < forgotten then
      redis.call('SET', KEYS[2], string.format('%d', forgotten))
    end
  end
end
return dropped
