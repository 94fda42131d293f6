-- Appends a control message for every node to the feed; it takes a sequence number but belongs
-- to no stream, so no client ever receives it.
-- KEYS: 1 seq, 2 floor, 3 feed; ARGV: 1 feed length kept, 2 message, 3 the newest position the
-- calling node has seen
ensure_sequence(KEYS[1], KEYS[2], tonumber(ARGV[3]))
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], string.format('%d-0', seq), 'c', ARGV[2])
return seq
