-- Events after a position from several streams, or 'expired' when any of those streams has
-- lost events after it (trimmed by length or age, or Redis lost its data).
-- KEYS: 1 floor, 2 forgotten, 3.. stream keys
-- ARGV: 1 position, 2 entries read per stream
-- Returns {'events', id, fields, id, fields, ...} (unsorted across streams) or {'expired'}.
-- A stream that had more than it gave sets a horizon: only entries up to the smallest such
-- horizon are returned, so the events returned are all the events up to there, in any stream,
-- and a page stays about as long as the count asked of each stream times a few.
local after = tonumber(ARGV[1])
local floor = redis.call('GET', KEYS[1])
if not floor or after < tonumber(floor) then
  return {'expired'}
end
local forgotten = tonumber(redis.call('GET', KEYS[2]) or '0')
local per = tonumber(ARGV[2])
local found = {}
local horizon = nil
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
    local entries = redis.call('XRANGE', KEYS[i], '(' .. ARGV[1] .. '-0', '+', 'COUNT', per)
    if #entries == per then
      local last = tonumber(string.match(entries[#entries][1], '^(%d+)-'))
      if not horizon or last < horizon then
        horizon = last
      end
    end
    found[#found + 1] = entries
  end
end
local out = {'events'}
for _, entries in ipairs(found) do
  for _, entry in ipairs(entries) do
    if not horizon or tonumber(string.match(entry[1], '^(%d+)-')) <= horizon then
      out[#out + 1] = entry[1]
      out[#out + 1] = entry[2]
    end
  end
end
return out
