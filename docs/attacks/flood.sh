#!/bin/bash
# flood.sh BIN label [extra herald args]: 25,000 half-open connections from 25 addresses, held
# 8 s by two client processes; /healthz from another address probed while they are held and after.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; LABEL=$2; shift 2; PORT=18601
D=$(mktemp -d); ulimit -n 20000
$BIN --listen 127.0.0.1:$PORT --data-dir $D --jwt-secret 0123456789abcdef0123456789abcdef0 "$@" > $D/log 2>&1 &
PID=$!; sleep 1
echo "== $LABEL"
python3 "$HERE"/hold.py 127.0.0.1 $PORT 12500 10 13 8 > $D/a.out &
A=$!
python3 "$HERE"/hold.py 127.0.0.1 $PORT 12500 30 12 8 > $D/b.out &
B=$!
sleep 5
echo "herald open files while held: $(ls /proc/$PID/fd | wc -l)"
curl -s -o /dev/null -w "healthz while held: %{http_code} in %{time_total}s\n" --max-time 5 --interface 127.0.0.1 http://127.0.0.1:$PORT/healthz || echo "healthz while held: no answer within 5 s"
wait $A $B; cat $D/a.out $D/b.out
sleep 8
curl -s -o /dev/null -w "healthz after: %{http_code} in %{time_total}s\n" --max-time 5 http://127.0.0.1:$PORT/healthz || echo "healthz after: no answer within 5 s"
echo "log lines 'Too many open files': $(grep -c 'Too many open files' $D/log)"
grep -m2 'connections beyond\|open files' $D/log
kill $PID; wait $PID 2>/dev/null; rm -rf $D
