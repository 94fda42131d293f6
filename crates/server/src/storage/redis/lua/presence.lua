-- One user's presence on one topic across the nodes: a hash of each node's connections, with
-- `present` while the user's arrival stands announced.
-- KEYS: 1 the presence hash, 2 the nodes (node by the time its announcement lapses)
-- ARGV: 1 operation, 2 the calling node (empty for none), 3 now (ms)
--   open:   one more connection of the node; 1 when the user was not present (announce its
--           arrival), else 0
--   close:  one less; the user's connections on live nodes (the caller counts as live)
--   settle: forgets the counts of nodes that are gone; when the user has no connection left,
--           forgets it and answers 1 if its arrival stood announced (announce its departure);
--           from the janitor (no calling node), only when a gone node's count was forgotten
local operation, node, now = ARGV[1], ARGV[2], tonumber(ARGV[3])

local function live_total(forget)
  local total, forgot = 0, false
  local fields = redis.call('HGETALL', KEYS[1])
  for i = 1, #fields, 2 do
    local field, count = fields[i], tonumber(fields[i + 1])
    if field ~= 'present' then
      local lapses = redis.call('ZSCORE', KEYS[2], field)
      if field == node or (lapses and tonumber(lapses) >= now) then
        total = total + count
      elseif forget then
        redis.call('HDEL', KEYS[1], field)
        forgot = true
      end
    end
  end
  return total, forgot
end

if operation == 'open' then
  redis.call('HINCRBY', KEYS[1], node, 1)
  if redis.call('HSETNX', KEYS[1], 'present', 1) == 1 then
    return 1
  end
  return 0
elseif operation == 'close' then
  if redis.call('HINCRBY', KEYS[1], node, -1) <= 0 then
    redis.call('HDEL', KEYS[1], node)
  end
  local total = live_total(false)
  return total
else
  local total, forgot = live_total(true)
  if total > 0 or (node == '' and not forgot) then
    return 0
  end
  local present = redis.call('HEXISTS', KEYS[1], 'present')
  redis.call('DEL', KEYS[1])
  return present
end
