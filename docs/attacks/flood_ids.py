"""flood_ids.py PORT SECONDS ADDRESSES: new client ids as fast as possible for SECONDS:
one pipelining HEAD /events worker and, per address 127.0.5.<n>, 8 workers opening GET /events
without a client id, reading the first bytes and closing."""
import asyncio, sys, time

port, seconds, addresses = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
deadline = time.time() + seconds
counts = {}

def count(key):
    counts[key] = counts.get(key, 0) + 1

async def head_worker():
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.4.1", 0))
    batch = b"HEAD /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n" * 200
    sent = 0
    async def drain():
        while True:
            data = await reader.read(65536)
            if not data:
                return
            counts['HEAD answers'] = counts.get('HEAD answers', 0) + data.count(b"HTTP/1.1 ")
    task = asyncio.create_task(drain())
    try:
        while time.time() < deadline:
            writer.write(batch); await writer.drain(); sent += 200
    except OSError:
        pass
    counts['HEAD sent'] = sent
    writer.close(); task.cancel()

async def get_worker(src):
    while time.time() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0))
            writer.write(b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"); await writer.drain()
            data = await asyncio.wait_for(reader.read(4096), 5)
            count("GET " + data.split(b"\r\n")[0].decode(errors="replace")[9:12])
            writer.close()
        except (OSError, asyncio.TimeoutError):
            count("GET error")

async def main():
    workers = [head_worker()] + [get_worker(f"127.0.5.{1 + a}") for a in range(addresses) for _ in range(8)]
    await asyncio.gather(*workers)
    print(counts, flush=True)

asyncio.run(main())
