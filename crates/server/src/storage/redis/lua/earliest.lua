-- The position a replay of some streams may start from without being refused: the floor, the
-- newest position each stream lost (its max-deleted-entry-id), or for a stream that is gone
-- (and for no streams at all) the newest position a forgotten stream lost.
-- KEYS: 1 floor, 2 forgotten, 3.. stream keys
local earliest = tonumber(redis.call('GET', KEYS[1]) or '0')
local forgotten = tonumber(redis.call('GET', KEYS[2]) or '0')
if #KEYS == 2 then
  earliest = math.max(earliest, forgotten)
end
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    earliest = math.max(earliest, forgotten)
  else
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' then
        earliest = math.max(earliest, tonumber(string.match(info[j + 1], '^(%d+)-')))
      end
    end
  end
end
return string.format('%d', earliest)
