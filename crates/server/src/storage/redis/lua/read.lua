-- Events after a position from several streams, or 'expired' when any of those streams has
-- lost events after it (trimmed by length or age, or Redis lost its data).
-- KEYS: 1 floor, 2 forgotten, 3.. stream keys
-- ARGV: 1 position, 2 limit per stream
-- Returns {'events', id, fields, id, fields, ...} (unsorted across streams) or {'expired'}.
local after = tonumber(ARGV[1])
local floor = redis.call('GET', KEYS[1])
if not floor or after < tonumber(floor) then
  return {'expired'}
end
local forgotten = tonumber(redis.call('GET', KEYS[2]) or '0')
local out = {'events'}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    if forgotten > after then
      return {'expired'}
    end
  else
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info, 2 do
      if info[j] == 'max-deleted-entry-id' then
        local deleted = tonumber(string.match(info[j + 1], '^(%d+)-'))
        if deleted > after then
          return {'expired'}
        end
      end
    end
    local entries = redis.call('XRANGE', KEYS[i], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
    for _, entry in ipairs(entries) do
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2]
    end
  end
end
return out
