"""The connection gate: per-IP and total limits, shared by worker processes."""

from __future__ import annotations

import asyncio
import os
import socket

from mailstead.net.listener import ConnectionGate, bind


def test_per_ip_limit_and_release() -> None:
    gate = ConnectionGate(per_ip=2, total=10)
    assert gate.admit("192.0.2.1") and gate.admit("192.0.2.1")
    assert not gate.admit("192.0.2.1")
    assert gate.admit("192.0.2.2")
    gate.release("192.0.2.1")
    assert gate.admit("192.0.2.1")


def test_total_limit() -> None:
    gate = ConnectionGate(per_ip=10, total=3)
    assert all(gate.admit(f"192.0.2.{n}") for n in range(3))
    assert not gate.admit("192.0.2.99")


def test_workers_count_together_and_a_dead_worker_is_forgotten() -> None:
    gate = ConnectionGate(per_ip=2, total=10, workers=2)
    gate.bind_worker(0)
    assert gate.admit("192.0.2.1")
    gate.bind_worker(1)
    assert gate.admit("192.0.2.1")
    assert not gate.admit("192.0.2.1")  # the other worker's connection counts
    gate.clear_worker(0)  # worker 0 died; its slots must not leak
    assert gate.admit("192.0.2.1")


def test_counts_are_shared_with_forked_workers() -> None:
    gate = ConnectionGate(per_ip=1, total=10, workers=2)
    pid = os.fork()
    if pid == 0:  # a worker takes the only slot of this address
        gate.bind_worker(1)
        os._exit(0 if gate.admit("192.0.2.1") else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not gate.admit("192.0.2.1")


def test_accepted_connections_do_not_wait_for_nagle() -> None:
    """asyncio sets TCP_NODELAY only on sockets made as TCP; bind() must make them so."""

    async def main() -> int:
        listener = bind(("127.0.0.1", 0))
        accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        class Probe(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                sock = transport.get_extra_info("socket")
                accepted.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                transport.close()

        server = await asyncio.get_running_loop().create_server(Probe, sock=listener)
        port = listener.getsockname()[1]
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        nodelay = await asyncio.wait_for(accepted, 5)
        writer.close()
        server.close()
        await server.wait_closed()
        return nodelay

    assert asyncio.run(main()) != 0
