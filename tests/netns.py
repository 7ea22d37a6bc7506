"""Hosts for tests: Linux network namespaces joined to this one by veth links.

Each :class:`Host` is a namespace with its own /30 link to the root namespace, its own
loopback and, for the processes started through :meth:`Host.argv`, its own hostname
(a UTS namespace) — to a process inside, another machine on a private network. A
:class:`Relay` in the root namespace forwards connections arriving on a link's root
side to a local service (PostgreSQL listens on 127.0.0.1 only, which no namespace can
reach), and remembers who connected.

Everything needs root and the ``ip`` command; :func:`hosts` skips the test with the
reason when it cannot make its namespaces, and removes them (and their links) however
the test ends. Names carry a random suffix, so parallel runs do not collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass(frozen=True)
class Host:
    """A network namespace ``name`` reached from the root namespace over ``outer``.

    ``gateway`` is the root side's address on the link, ``address`` the namespace's."""

    name: str
    outer: str
    inner: str
    gateway: str
    address: str

    def argv(self, *command: str) -> list[str]:
        """``command`` run inside the namespace, with the namespace's name as hostname.

        ``ip netns exec``, ``unshare`` and ``sh`` each exec the next, so the process
        started keeps the pid of the one the caller spawns."""
        set_name = 'hostname "$0" && exec "$@"'
        return ["ip", "netns", "exec", self.name, "unshare", "--uts", "sh", "-c", set_name,
                self.name, *command]  # fmt: skip

    def link(self, up: bool) -> None:
        """Plug or pull the link's cable (from the root side: silent for the inside)."""
        _ip("link", "set", self.outer, "up" if up else "down")

    def remove(self) -> None:
        _ip("link", "del", self.outer, check=False)
        _ip("netns", "del", self.name, check=False)


def _make_host(name: str, link: str, subnet: str, index: int) -> Host:
    base = int(subnet.rsplit(".", 1)[1]) + 4 * index
    prefix = subnet.rsplit(".", 1)[0]
    host = Host(name, link, f"{link}i", f"{prefix}.{base + 1}", f"{prefix}.{base + 2}")
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
        _ip("link", "set", host.inner, "netns", name)
        _ip("addr", "add", f"{host.gateway}/30", "dev", host.outer)
        _ip("link", "set", host.outer, "up")
        _ip("-n", name, "addr", "add", f"{host.address}/30", "dev", host.inner)
        _ip("-n", name, "link", "set", host.inner, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        probe = subprocess.run(
            host.argv("true"), capture_output=True, text=True, timeout=30, check=False
        )
        if probe.returncode != 0:
            raise RuntimeError(f"cannot run a process inside {name}: {probe.stderr.strip()}")
    except BaseException:
        host.remove()
        raise
    return host


@contextlib.contextmanager
def hosts(*labels: str) -> Iterator[dict[str, Host]]:
    """One namespace per label (``plaitA-1f2e3d`` for ``"A"``), removed afterwards.

    Skips the test when this is not root, ``ip``/``unshare`` are missing, or the
    namespaces cannot be made (a container without ``CAP_NET_ADMIN``/``CAP_SYS_ADMIN``)."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    missing = [tool for tool in ("ip", "unshare") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {' or '.join(missing)} command (iproute2, util-linux)")
    suffix = secrets.token_hex(3)
    octets = (secrets.randbelow(64) + 160, secrets.randbelow(256), secrets.randbelow(16) * 16)
    subnet = "10.{}.{}.{}".format(*octets)  # room for four /30 links
    made: dict[str, Host] = {}
    try:
        for index, label in enumerate(labels):
            name, link = f"plait{label}-{suffix}", f"pv{label}{suffix}"
            try:
                made[label] = _make_host(name, link, subnet, index)
            except RuntimeError as exc:
                pytest.skip(f"cannot make network namespace {name}: {exc}")
        yield made
    finally:
        for host in made.values():
            host.remove()


class Relay:
    """A TCP relay on its own event loop thread: each :meth:`listen` address forwards
    to ``target``. :attr:`peers` counts accepted connections by client address."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.peers: Counter[str] = Counter()
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def listen(self, host: str) -> int:
        """Start listening on ``host`` (a free port); returns the port."""
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._accept, host, 0), self._loop
        )
        server = future.result(10)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.peers[writer.get_extra_info("peername")[0]] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()

    def close(self) -> None:
        """Stop listening and cut every connection it relays."""

        async def shut() -> None:
            for server in self._servers:
                server.close()
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()
