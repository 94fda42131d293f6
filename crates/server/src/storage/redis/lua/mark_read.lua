-- Marks one or all of a user's notifications read.
-- KEYS: 1 all ids, 2 unread ids; ARGV: 1 an id, or 'all'
-- Returns {found (0/1), unread count after, ids changed (newest first)...}.
local changed = {}
if ARGV[1] == 'all' then
  changed = redis.call('ZREVRANGE', KEYS[2], 0, -1)
  redis.call('DEL', KEYS[2])
else
  if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    return {0, redis.call('ZCARD', KEYS[2])}
  end
  if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 then
    changed = {ARGV[1]}
  end
end
local out = {1, redis.call('ZCARD', KEYS[2])}
for _, id in ipairs(changed) do
  out[#out + 1] = id
end
return out
