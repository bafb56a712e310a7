"""An independent HTTP/3 client (aioquic) for Potok's edge tests.

    python3 h3get.py HOST PORT CA_PEM OUTDIR PATH [PATH ...]

Fetches each PATH over one QUIC connection (SNI "localhost", the certificate checked
against CA_PEM), writes body i to OUTDIR/i.body and prints "STATUS LENGTH PATH" per line.
"""
import asyncio
import sys

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic)
        self.waiting = {}
        self.responses = {}

    def quic_event_received(self, event):
        for ev in self.h3.handle_event(event):
            if isinstance(ev, (HeadersReceived, DataReceived)):
                r = self.responses.setdefault(ev.stream_id, {"headers": [], "body": b""})
                if isinstance(ev, HeadersReceived):
                    r["headers"] += ev.headers
                else:
                    r["body"] += ev.data
                if ev.stream_ended and ev.stream_id in self.waiting:
                    self.waiting.pop(ev.stream_id).set_result(r)

    async def get(self, authority, path):
        sid = self._quic.get_next_available_stream_id()
        self.h3.send_headers(
            sid,
            [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority.encode()), (b":path", path.encode())],
            end_stream=True,
        )
        fut = asyncio.get_running_loop().create_future()
        self.waiting[sid] = fut
        self.transmit()
        return await asyncio.wait_for(fut, 20)


async def main(host, port, ca, outdir, paths):
    cfg = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    cfg.load_verify_locations(ca)
    cfg.server_name = "localhost"
    async with connect(host, port, configuration=cfg, create_protocol=Client) as client:
        for i, path in enumerate(paths):
            r = await client.get(f"localhost:{port}", path)
            status = dict(r["headers"]).get(b":status", b"?").decode()
            with open(f"{outdir}/{i}.body", "wb") as f:
                f.write(r["body"])
            print(status, len(r["body"]), path, flush=True)


if __name__ == "__main__":
    host, port, ca, outdir, *paths = sys.argv[1:]
    asyncio.run(main(host, int(port), ca, outdir, paths))
