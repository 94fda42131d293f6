-- The newest sequence number (see ensure_sequence in sequence.lua).
-- KEYS: 1 seq, 2 floor; ARGV: 1 the newest position the calling node has seen
return ensure_sequence(KEYS[1], KEYS[2], tonumber(ARGV[1]))
