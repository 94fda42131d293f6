-- Who watches a topic's presence across the nodes: a hash of each node's watching connections.
-- KEYS: 1 the watchers hash, 2 the nodes (node by the time its announcement lapses)
-- ARGV: 1 change (1, -1, or 0 to ask), 2 the calling node, 3 now (ms)
-- Returns 1 when a live node (the caller counts as live) has a watcher, else 0.
local change, node, now = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if change ~= 0 then
  if redis.call('HINCRBY', KEYS[1], node, change) <= 0 then
    redis.call('HDEL', KEYS[1], node)
  end
end
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local lapses = redis.call('ZSCORE', KEYS[2], fields[i])
  if tonumber(fields[i + 1]) > 0 and (fields[i] == node or (lapses and tonumber(lapses) >= now)) then
    return 1
  end
end
return 0
