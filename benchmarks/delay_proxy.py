"""A TCP proxy on loopback that adds a fixed delay to every request: a bucket's latency, measured here.

    python benchmarks/delay_proxy.py --listen 9767 --target 9766 --delay-ms 20

Each chunk a client sends (an HTTP request: its headers, and its body when it is small) reaches the
server ``--delay-ms`` later; answers go back at once. So each request to the S3 server behind it
costs one extra ``delay`` of wall time, as a bucket's round trip does, while the CPU work stays the
same. Loopback only (it binds 127.0.0.1 and forwards to 127.0.0.1). Stops on Ctrl-C or after
``--max-seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

HOST = "127.0.0.1"


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    try:
        while data := await reader.read(65536):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def serve(listen: int, target: int, delay: float, max_seconds: float) -> None:
    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection(HOST, target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer, delay),  # requests: delayed
            pipe(server_reader, client_writer, 0.0),  # answers: at once
        )

    server = await asyncio.start_server(handle, HOST, listen)
    print(f"delaying proxy on {HOST}:{listen} -> {HOST}:{target}, +{delay * 1000:.0f} ms per request", flush=True)
    async with server:
        await asyncio.wait_for(server.serve_forever(), max_seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--listen", type=int, required=True)
    p.add_argument("--target", type=int, required=True)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--max-seconds", type=float, default=3600.0)
    args = p.parse_args()
    with contextlib.suppress(KeyboardInterrupt, TimeoutError):
        asyncio.run(serve(args.listen, args.target, args.delay_ms / 1000, args.max_seconds))


if __name__ == "__main__":
    main()
