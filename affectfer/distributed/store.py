"""A small key-value store over TCP: the rendezvous and the heartbeats of a process group.

Rank 0 serves it (a daemon thread per connection); every rank, rank 0 included, is a client. Keys
are strings, values bytes. Operations: set, get (waits until the key exists, up to a timeout),
add (an atomic integer counter, returns the new value) and ages (for every key under a prefix: its
value and the seconds since it was last written, by the server's clock, so the nodes' clocks need
not agree). The role is torch.distributed.TCPStore's; the protocol is our own and minimal:

    request : op (1 byte) | key length (4) | key | value length (8) | value | timeout (8, float64)
    response: status (1 byte: 0 ok, 1 timeout) | value length (8) | value
"""
from __future__ import annotations

import socket
import struct
import threading
import time

_SET, _GET, _ADD, _AGES = 1, 2, 3, 4
_HEAD = struct.Struct("!BI")
_LEN = struct.Struct("!Q")
_TIMEOUT = struct.Struct("!d")


class StoreTimeout(TimeoutError):
    pass


def _recv_exact(sock, n):
    chunks, left = [], n
    while left:
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionError("the store connection closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class _Server:
    def __init__(self, host, port):
        self.data, self.written = {}, {}
        self.cond = threading.Condition()
        self.sock = socket.create_server((host, port), reuse_port=False)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, name="affectfer-store", daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return  # closed
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="affectfer-store-conn", daemon=True).start()

    def _serve(self, conn):
        with conn:
            try:
                while True:
                    op, klen = _HEAD.unpack(_recv_exact(conn, _HEAD.size))
                    key = _recv_exact(conn, klen).decode()
                    value = _recv_exact(conn, _LEN.unpack(_recv_exact(conn, _LEN.size))[0])
                    timeout = _TIMEOUT.unpack(_recv_exact(conn, _TIMEOUT.size))[0]
                    status, reply = self._handle(op, key, value, timeout)
                    conn.sendall(bytes([status]) + _LEN.pack(len(reply)) + reply)
            except (ConnectionError, OSError):
                return

    def _handle(self, op, key, value, timeout):
        with self.cond:
            if op == _SET:
                self.data[key], self.written[key] = value, time.monotonic()
                self.cond.notify_all()
                return 0, b""
            if op == _ADD:
                n = int(self.data.get(key, b"0")) + int(value)
                self.data[key], self.written[key] = str(n).encode(), time.monotonic()
                self.cond.notify_all()
                return 0, str(n).encode()
            if op == _GET:
                if not self.cond.wait_for(lambda: key in self.data, timeout=timeout if timeout > 0 else None):
                    return 1, b""
                return 0, self.data[key]
            if op == _AGES:
                now = time.monotonic()
                lines = [f"{k}\t{now - self.written[k]:.3f}\t{self.data[k].decode(errors='replace')}"
                         for k in sorted(self.data) if k.startswith(key)]
                return 0, "\n".join(lines).encode()
        return 1, b"unknown op"

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept thread
        except OSError:
            pass
        self.sock.close()


class TCPStore:
    """TCPStore(host, port, is_server, timeout): rank 0 passes is_server=True (port 0 picks a free
    port: read it back from .port). Clients retry the connection until `timeout` seconds, so they
    may start before the server. Thread-safe (one request at a time per client)."""

    def __init__(self, host: str, port: int, is_server: bool = False, timeout: float = 300.0):
        if not isinstance(port, int) or not 0 <= port < 65536:
            raise ValueError(f"port must be an int in [0, 65536), got {port!r}")
        self.timeout = float(timeout)
        self._server = _Server(host if host else "", port) if is_server else None
        self.host = host
        self.port = self._server.port if self._server else port
        self._lock = threading.Lock()
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._sock = socket.create_connection((host, self.port), timeout=min(5.0, self.timeout))
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"cannot reach the rendezvous store at {host}:{self.port} within "
                                          f"{self.timeout:.0f} s ({e}); is MASTER_ADDR/MASTER_PORT right and rank 0 "
                                          f"running?") from None
                time.sleep(0.1)
        self._sock.settimeout(None)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _request(self, op, key, value=b"", timeout=0.0):
        k = key.encode()
        msg = _HEAD.pack(op, len(k)) + k + _LEN.pack(len(value)) + value + _TIMEOUT.pack(timeout)
        with self._lock:
            self._sock.sendall(msg)
            status = _recv_exact(self._sock, 1)[0]
            reply = _recv_exact(self._sock, _LEN.unpack(_recv_exact(self._sock, _LEN.size))[0])
        return status, reply

    def set(self, key: str, value) -> None:
        self._request(_SET, key, value if isinstance(value, bytes) else str(value).encode())

    def get(self, key: str, timeout: float | None = None) -> bytes:
        """The value of `key`, waiting until some rank sets it (StoreTimeout after `timeout` s)."""
        timeout = self.timeout if timeout is None else float(timeout)
        status, reply = self._request(_GET, key, timeout=timeout)
        if status:
            raise StoreTimeout(f"key {key!r} was not set within {timeout:.0f} s")
        return reply

    wait = get

    def add(self, key: str, amount: int = 1) -> int:
        return int(self._request(_ADD, key, str(int(amount)).encode())[1])

    def ages(self, prefix: str) -> dict:
        """{key: (seconds since last written, value as str)} for every key starting with prefix."""
        out = {}
        for line in self._request(_AGES, prefix)[1].decode().splitlines():
            key, age, value = line.split("\t", 2)
            out[key] = (float(age), value)
        return out

    def close(self) -> None:
        try:
            self._sock.close()
        finally:
            if self._server:
                self._server.close()
