#!/bin/bash
# storm.sh BIN label [extra herald args]: 2,000 clients resume a 2,000-event history at once
# from 100 addresses without reading; /readyz is timed during the storm.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; LABEL=$2; PORT=18603; SECRET=0123456789abcdef0123456789abcdef0
D=$(mktemp -d); ulimit -n 20000
$BIN --listen 127.0.0.1:$PORT --data-dir $D --jwt-secret $SECRET --history-max-events 2000 --publish-rate 0 --max-connections-per-address 0 "${@:3}" > $D/log 2>&1 &
PID=$!; sleep 1.5
TOKEN=$($BIN token --jwt-secret $SECRET --sub bench --publish '*')
echo "== $LABEL"; python3 "$HERE"/storm.py $PORT $TOKEN 2000 100
kill $PID; wait $PID 2>/dev/null; rm -rf $D
