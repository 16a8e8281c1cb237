#!/usr/bin/env python3
"""benches/vpn/tool.py: the loopback-free tools of benches/vpn.sh, each run
inside one of its namespaces. Servers: `source PORT` (each connection gets
the byte count it asks for in an 8-byte header, then is closed; 0 asks for
one byte and a held connection), `udpecho PORT`. Clients print one
`RESULT NAME fields...` line: `pull`, `multi`, `connect`, `udprtt`, `hold`,
`revoke`. Optional SOCKS5 (`--socks HOST:PORT`) for the TCP clients."""
import os, select, socket, statistics, struct, subprocess, sys, threading, time

BUF = 1 << 20


def serve_source(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(4096)
    zero = bytes(BUF)
    held = []

    def one(c):
        try:
            hdr = b""
            while len(hdr) < 8:
                b = c.recv(8 - len(hdr))
                if not b:
                    return
                hdr += b
            n = struct.unpack("!Q", hdr)[0]
            if n == 0:
                c.sendall(b"!")
                held.append(c)  # held until the peer goes
                c.recv(1)
                return
            view = memoryview(zero)
            while n > 0:
                k = c.send(view[: min(n, BUF)])
                n -= k
        except OSError:
            pass
        finally:
            c.close()

    print("listening", port, flush=True)
    while True:
        c, _ = s.accept()
        threading.Thread(target=one, args=(c,), daemon=True).start()


def serve_udpecho(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    print("listening", port, flush=True)
    while True:
        d, a = s.recvfrom(65535)
        s.sendto(d, a)


def dial(host, port, socks, timeout=10):
    if socks:
        sh, sp = socks.rsplit(":", 1)
        c = socket.create_connection((sh, int(sp)), timeout=timeout)
        c.sendall(b"\x05\x01\x00")
        if c.recv(2) != b"\x05\x00":
            raise OSError("socks: no auth method")
        c.sendall(b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port))
        r = b""
        while len(r) < 10:
            b = c.recv(10 - len(r))
            if not b:
                raise OSError("socks: closed")
            r += b
        if r[1] != 0:
            raise OSError("socks: refused %d" % r[1])
        return c
    return socket.create_connection((host, port), timeout=timeout)


def pull_one(host, port, n, socks, secs):
    c = dial(host, port, socks)
    c.settimeout(secs)
    t0 = time.perf_counter()
    c.sendall(struct.pack("!Q", n))
    buf = bytearray(BUF)
    got = 0
    deadline = t0 + secs
    try:
        while got < n and time.perf_counter() < deadline:
            k = c.recv_into(buf)
            if k == 0:
                break
            got += k
    except OSError:
        pass
    dt = time.perf_counter() - t0
    c.close()
    return got, dt


def main():
    a = sys.argv[1:]
    socks = None
    if "--socks" in a:
        i = a.index("--socks")
        socks = a[i + 1]
        del a[i : i + 2]
    cmd = a[0]
    if cmd == "source":
        serve_source(int(a[1]))
    elif cmd == "udpecho":
        serve_udpecho(int(a[1]))
    elif cmd == "pull":  # pull HOST PORT BYTES SECS
        host, port, n, secs = a[1], int(a[2]), int(a[3]), float(a[4])
        got, dt = pull_one(host, port, n, socks, secs)
        print("RESULT pull %d %.3f %.3f" % (got, dt, got * 8 / dt / 1e9))
    elif cmd == "multi":  # multi HOST PORT STREAMS BYTES SECS
        host, port, k, n, secs = a[1], int(a[2]), int(a[3]), int(a[4]), float(a[5])
        res = [None] * k

        def run(i):
            try:
                res[i] = pull_one(host, port, n, socks, secs)
            except OSError:
                res[i] = (0, secs)

        t0 = time.perf_counter()
        ts = [threading.Thread(target=run, args=(i,)) for i in range(k)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wall = time.perf_counter() - t0
        total = sum(r[0] for r in res)
        rates = [r[0] * 8 / r[1] / 1e9 for r in res]
        done = sum(1 for r in res if r[0] >= n)
        print("RESULT multi %.3f %.3f %.3f %d %d" % (total * 8 / wall / 1e9, min(rates), max(rates), total, done))
    elif cmd == "connect":  # connect HOST PORT N: connect and first byte, ms
        host, port, k = a[1], int(a[2]), int(a[3])
        conn, first = [], []
        for _ in range(k):
            t0 = time.perf_counter()
            c = dial(host, port, socks)
            t1 = time.perf_counter()
            c.sendall(struct.pack("!Q", 0))
            c.recv(1)
            t2 = time.perf_counter()
            c.close()
            conn.append((t1 - t0) * 1e3)
            first.append((t2 - t0) * 1e3)
            time.sleep(0.01)
        print("RESULT connect %.3f %.3f %d" % (statistics.median(conn), statistics.median(first), k))
    elif cmd == "udprtt":  # udprtt HOST PORT N: first answer, then median
        host, port, k = a[1], int(a[2]), int(a[3])
        rtts = []
        for i in range(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # a new flow each
            s.settimeout(2)
            t0 = time.perf_counter()
            s.sendto(b"q%d" % i, (host, port))
            try:
                s.recvfrom(2048)
                rtts.append((time.perf_counter() - t0) * 1e3)
            except OSError:
                pass
            s.close()
            time.sleep(0.01)
        med = statistics.median(rtts) if rtts else float("nan")
        print("RESULT udprtt %.3f %d %d" % (med, len(rtts), k))
    elif cmd == "hold":  # hold HOST PORT N: N held connections until stdin ends
        host, port, k = a[1], int(a[2]), int(a[3])
        cs = []
        t0 = time.perf_counter()
        for _ in range(k):
            try:
                c = dial(host, port, socks)
                c.sendall(struct.pack("!Q", 0))
                if c.recv(1) == b"!":
                    cs.append(c)
            except OSError:
                pass
        print("RESULT hold %d %.3f" % (len(cs), time.perf_counter() - t0), flush=True)
        sys.stdin.read()
    elif cmd == "revoke":  # revoke HOST PORT N PUSH...: time to cut N held flows
        host, port, k, push = a[1], int(a[2]), int(a[3]), a[4:]
        cs = []
        for _ in range(k):
            c = dial(host, port, socks)
            c.sendall(struct.pack("!Q", 0))
            if c.recv(1) == b"!":
                c.setblocking(False)
                cs.append(c)
        t0 = time.perf_counter()
        p = subprocess.run(push, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t1 = time.perf_counter()
        ends = []
        live = set(cs)
        deadline = t0 + 10
        while live and time.perf_counter() < deadline:
            r, _, _ = select.select(list(live), [], [], 0.05)
            now = time.perf_counter()
            for c in r:
                try:
                    d = c.recv(64)
                except OSError:
                    d = b""
                if not d:
                    live.discard(c)
                    ends.append((now - t0) * 1e3)
        ends.sort()
        mx = ends[-1] if ends else float("nan")
        med = statistics.median(ends) if ends else float("nan")
        print("RESULT revoke %d %d %.3f %.3f %.3f %d" % (len(ends), len(cs), med, mx, (t1 - t0) * 1e3, p.returncode))
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
