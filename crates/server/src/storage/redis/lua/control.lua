-- Appends a control message for every node to the feed; it takes a sequence number but belongs
-- to no stream, so no client ever receives it.
-- KEYS: 1 seq, 2 feed; ARGV: 1 feed length kept, 2 message
if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('HERALD_NO_LOG the log has not started')
end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], string.format('%d-0', seq), 'c', ARGV[2])
return seq
