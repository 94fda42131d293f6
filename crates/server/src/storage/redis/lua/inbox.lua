-- A page of a user's inbox, newest first.
-- KEYS: 1 all ids, 2 unread ids, 3 items
-- ARGV: 1 '1' for unread only, 2 how many, 3 only ids below this ('+inf' for no bound)
-- Returns {unread count, id, item, unread (0/1), ...}.
local source = KEYS[1]
if ARGV[1] == '1' then
  source = KEYS[2]
end
local upper = ARGV[3]
if upper ~= '+inf' then
  upper = '(' .. upper
end
local ids = redis.call('ZREVRANGEBYSCORE', source, upper, '-inf', 'LIMIT', 0, tonumber(ARGV[2]))
local out = {redis.call('ZCARD', KEYS[2])}
for _, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('ZSCORE', KEYS[2], id) and 1 or 0
end
return out
