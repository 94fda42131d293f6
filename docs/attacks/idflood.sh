#!/bin/bash
# idflood.sh BIN label sqlite|redis: a 60 s client-id flood; storage growth and ids stored.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; LABEL=$2; STORE=$3; PORT=18602; RPORT=16390
D=$(mktemp -d); ulimit -n 20000
ARGS=(--listen 127.0.0.1:$PORT --data-dir $D --jwt-secret 0123456789abcdef0123456789abcdef0)
if [ "$STORE" = redis ]; then
  redis-server --port $RPORT --save '' --appendonly no --daemonize yes --logfile $D/redis.log >/dev/null
  sleep 0.5; ARGS+=(--redis redis://127.0.0.1:$RPORT)
fi
$BIN "${ARGS[@]}" > $D/log 2>&1 &
PID=$!; sleep 1.5
size() { if [ "$STORE" = redis ]; then redis-cli -p $RPORT info memory | grep '^used_memory:' | cut -d: -f2 | tr -d '\r'; else du -sb $D | cut -f1; fi; }
ids() { if [ "$STORE" = redis ]; then redis-cli -p $RPORT zcard herald:clients; else python3 -c "import sqlite3,sys; c=sqlite3.connect('file:$D/herald.db?mode=ro', uri=True); print(c.execute('select count(*) from clients').fetchone()[0])"; fi; }
B=$(size)
python3 "$HERE"/flood_ids.py $PORT 60 10
sleep 2
A=$(size)
echo "== $LABEL $STORE: storage $B -> $A bytes (+$(( (A-B)/1024 )) KiB); ids stored: $(ids)"
kill $PID; wait $PID 2>/dev/null
[ "$STORE" = redis ] && redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1
rm -rf $D
