#!/bin/bash
# slowloris.sh BIN label: 500 half-open heads and 500 stalled bodies, counted after 15 s.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=$1; LABEL=$2; PORT=18600
D=$(mktemp -d); ulimit -n 20000
$BIN --listen 127.0.0.1:$PORT --data-dir $D --jwt-secret 0123456789abcdef0123456789abcdef0 > $D/log 2>&1 &
PID=$!; sleep 1
echo "== $LABEL: half-open heads"
python3 "$HERE"/hold.py 127.0.0.1 $PORT 500 10 5 15
echo "== $LABEL: POST /api/publish with Content-Length 9000000 and 2 bytes sent"
python3 "$HERE"/hold.py 127.0.0.1 $PORT 500 20 5 15 'POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 9000000\r\n\r\n{"'
echo "== $LABEL: GET /healthz with Content-Length 9000000 and 2 bytes sent"
python3 "$HERE"/hold.py 127.0.0.1 $PORT 500 30 5 15 'GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 9000000\r\n\r\n{"'
echo "== $LABEL: idle keep-alive after one answer"
python3 "$HERE"/hold.py 127.0.0.1 $PORT 500 40 5 15 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'
kill $PID; wait $PID 2>/dev/null; rm -rf $D
