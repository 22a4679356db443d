"""An independent TURN client for calls/turn/tests/aioice.rs: aioice (PyPI) allocates on the
Mediaplane TURN server, sends numbered datagrams to a UDP peer through the relay and waits for
the peer's echoes. Prints one JSON line with what happened; the Rust test judges it.

usage: aioice_client.py HOST PORT TRANSPORT(udp|tcp|tls) USERNAME PASSWORD PEER_HOST PEER_PORT COUNT
"""

import asyncio
import json
import ssl
import sys

from aioice import stun, turn


class Collector(asyncio.DatagramProtocol):
    def __init__(self):
        self.received = {}
        self.sources = set()
        self.done = asyncio.Event()
        self.expected = 0

    def datagram_received(self, data, addr):
        self.received[data] = self.received.get(data, 0) + 1
        self.sources.add(f"{addr[0]}:{addr[1]}")
        if len(self.received) >= self.expected:
            self.done.set()


def payload(n):
    # Distinct, recognisable and not a multiple of four long, so stream padding is exercised.
    return f"aioice-{n:05d}-".encode() + bytes((n + i) % 256 for i in range(101))


async def main():
    host, port, transport, username, password, peer_host, peer_port, count = sys.argv[1:9]
    port, peer_port, count = int(port), int(peer_port), int(count)
    context = None
    if transport == "tls":
        # The server's default certificate is self-signed.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        relay, collector = await asyncio.wait_for(
            turn.create_turn_endpoint(
                Collector,
                server_addr=(host, port),
                username=username,
                password=password,
                ssl=context,
                transport="udp" if transport == "udp" else "tcp",
            ),
            timeout=10,
        )
    except stun.TransactionFailed as exc:
        code = exc.response.attributes.get("ERROR-CODE", (0, ""))[0]
        print(json.dumps({"allocated": False, "error_code": code}))
        return
    collector.expected = count
    relayed = relay.get_extra_info("sockname")
    mapped = relay.get_extra_info("related_address")
    sent = [payload(n) for n in range(count)]
    for data in sent:
        relay.sendto(data, (peer_host, peer_port))
        # Pace a little: a burst of 2·count sends over loopback can overrun socket buffers.
        await asyncio.sleep(0.002)
    try:
        await asyncio.wait_for(collector.done.wait(), timeout=10)
    except asyncio.TimeoutError:
        pass
    intact = sum(1 for data in sent if data in collector.received)
    unexpected = sum(1 for data in collector.received if data not in set(sent))
    relay.close()
    await asyncio.sleep(0.2)
    print(
        json.dumps(
            {
                "allocated": True,
                "relayed": f"{relayed[0]}:{relayed[1]}",
                "mapped": f"{mapped[0]}:{mapped[1]}",
                "sent": len(sent),
                "echoed_intact": intact,
                "unexpected": unexpected,
                "sources": sorted(collector.sources),
            }
        )
    )


asyncio.run(main())
