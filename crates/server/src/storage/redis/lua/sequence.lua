-- Prepended to the scripts that issue or read positions.
--
-- Makes sure the sequence exists and is not behind `seen`, the newest position the calling node
-- has seen, and returns its value. The sequence starts at the current time in microseconds; it
-- starts there again when Redis has no sequence, or one behind what a node has seen (Redis lost
-- data): ids issued before the loss are then older than the new floor, and replaying from them
-- announces a reset instead of matching different events.
local function ensure_sequence(seq_key, floor_key, seen)
  local current = redis.call('GET', seq_key)
  if current and tonumber(current) >= seen then
    return current
  end
  local now = redis.call('TIME')
  local start = now[1] .. string.format('%06d', tonumber(now[2]))
  if tonumber(start) <= seen then
    start = string.format('%d', seen + 1)
  end
  redis.call('SET', seq_key, start)
  redis.call('SET', floor_key, start)
  return start
end
