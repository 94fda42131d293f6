"""Hold half-open connections: python3 hold.py HOST PORT COUNT FIRST_ADDR_OCTET ADDRESSES WAIT_S [REQUEST]
Opens COUNT connections spread over 127.0.<octet..>.1, each sending a partial request head,
then after WAIT_S seconds reports how many are still open, how many were refused (and how),
and how many failed to connect."""
import asyncio, sys, time

host, port, count, octet, addresses, wait = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
request = (sys.argv[7] if len(sys.argv) > 7 else "GET /healthz HTTP/1.1\r\nHost: x\r\n").encode().decode('unicode_escape').encode()

async def one(i, results):
    src = f"127.0.{octet + i % addresses}.1"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, local_addr=(src, 0)), 5)
    except (OSError, asyncio.TimeoutError) as e:
        results['connect_error'] += 1
        return None
    try:
        writer.write(request)
        await writer.drain()
    except OSError:
        pass
    return reader, writer

async def main():
    results = {'connect_error': 0}
    started = time.time()
    conns = []
    for batch in range(0, count, 500):
        conns += await asyncio.gather(*(one(i, results) for i in range(batch, min(count, batch + 500))))
    opened = time.time() - started
    await asyncio.sleep(max(0.0, wait - opened))
    open_, closed, statuses = 0, 0, {}
    for c in conns:
        if c is None:
            continue
        reader, writer = c
        try:
            data = await asyncio.wait_for(reader.read(4096), 0.001)
            if data:
                line = data.split(b"\r\n")[0].decode(errors="replace")
                try:
                    more = await asyncio.wait_for(reader.read(4096), 0.05)
                    line += " then closed" if not more else " then more"
                except asyncio.TimeoutError:
                    line += " and still open"
                except OSError:
                    line += " then closed"
                statuses[line] = statuses.get(line, 0) + 1
            else:
                closed += 1
        except asyncio.TimeoutError:
            open_ += 1
        except OSError:
            closed += 1
    print(f"opened {count} in {opened:.1f}s; after {wait:.0f}s: still open {open_}, closed without answer {closed}, answered {statuses}, connect errors {results['connect_error']}", flush=True)
    for c in conns:
        if c:
            c[1].close()

asyncio.run(main())
