"""storm.py PORT TOKEN CLIENTS ADDRESSES: publishes 2,000 events of 1 KiB to `history`, then
CLIENTS connections from ADDRESSES addresses resume from the first, reading nothing; /readyz is
timed during the storm."""
import asyncio, json, sys, time, urllib.request

port, token, clients, addresses = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
base = f"http://127.0.0.1:{port}"

def publish(i):
    body = json.dumps({"topic": "history", "type": "old", "data": "x" * 1024}).encode()
    req = urllib.request.Request(base + "/api/publish", body, {"content-type": "application/json", "authorization": "Bearer " + token})
    return json.load(urllib.request.urlopen(req))["id"]

async def http_time(path):
    started = time.time()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(4096), 120)
    return data.split(b"\r\n")[0].decode(), time.time() - started

async def main():
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(None, publish, 0)
    for start in range(1, 2000, 50):
        await asyncio.gather(*(loop.run_in_executor(None, publish, i) for i in range(start, min(2000, start + 50))))
    request = f"GET /events?topic=history HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n".encode()
    storm = []
    async def resume(i):
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(f"127.0.{100 + i % addresses}.1", 0))
        w.write(request)
        return r, w
    started = time.time()
    storm = await asyncio.gather(*(resume(i) for i in range(clients)))
    samples = []
    for _ in range(5):
        samples.append(await http_time("/readyz"))
        await asyncio.sleep(0.2)
    print(f"{clients} resuming from {addresses} addresses, opened in {time.time() - started:.1f}s; /readyz during the storm: " + ", ".join(f"{s} {t*1000:.0f} ms" for s, t in samples), flush=True)
    for r, w in storm:
        w.close()

asyncio.run(main())
