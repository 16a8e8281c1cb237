#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets added with fuzz/run.sh:
tunnel_frame, filter_http, filter_websocket, filter_vnc and socks5.
Run from anywhere; the files are committed, so this is only needed to
change them. Formats: each target's header comment in fuzz_targets/."""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    os.makedirs(os.path.join(HERE, target), exist_ok=True)
    with open(os.path.join(HERE, target, name), "wb") as f:
        f.write(data)


# --- filter scripts: [tag][len u16 BE][bytes]; tag 0x80 = server side,
# low 7 bits = the size of the pieces the event is cut into (0 = whole).
def c(data, step=0):
    return bytes([step & 0x7F]) + struct.pack(">H", len(data)) + data


def s(data, step=0):
    return bytes([0x80 | (step & 0x7F)]) + struct.pack(">H", len(data)) + data


GET = (b"GET /api/status?unit=3 HTTP/1.1\r\nHost: 10.0.0.5\r\n"
       b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n")
HEAD = b"HEAD / HTTP/1.1\r\nHost: plc\r\nConnection: keep-alive\r\n\r\n"
OPTIONS = b"OPTIONS * HTTP/1.1\r\nHost: plc\r\n\r\n"
POST = (b"POST /api/setpoint HTTP/1.1\r\nHost: 10.0.0.5\r\n"
        b"Content-Type: application/json\r\nContent-Length: 14\r\n\r\n"
        b'{"value": 42}\n')
CHUNKED = (b"GET /log HTTP/1.1\r\nHost: plc\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n")
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

write("filter_http", "get", c(GET))
write("filter_http", "get-split", c(GET, 7) + s(OK) + c(GET, 1))
write("filter_http", "pipelined", c(GET + HEAD + OPTIONS, 13))
write("filter_http", "post", c(POST))
write("filter_http", "get-then-post", c(GET) + s(OK) + c(POST, 5))
write("filter_http", "chunked", c(CHUNKED, 3))


def ws_frame(opcode, payload, fin=True, mask=b"\x37\xfa\x21\x3d"):
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: hmi.local\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
          b"Connection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
FRAMES = (ws_frame(1, b"Hello") + ws_frame(9, b"ping") + ws_frame(10, b"")
          + ws_frame(2, bytes(range(200))) + ws_frame(1, b"frag", fin=False)
          + ws_frame(0, b"ment") + ws_frame(8, b"\x03\xe8bye"))

write("filter_websocket", "upgrade", c(UPGRADE))
write("filter_websocket", "session", c(UPGRADE) + s(SWITCH) + c(FRAMES))
write("filter_websocket", "session-split", c(UPGRADE, 9) + s(SWITCH, 4) + c(FRAMES, 3))
write("filter_websocket", "big-frame", c(UPGRADE) + c(ws_frame(2, b"x" * 70000)[:400]))
write("filter_websocket", "no-upgrade", c(GET))

PIXEL_FORMAT = bytes([32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
SERVER_INIT = struct.pack(">HH", 1024, 768) + PIXEL_FORMAT + struct.pack(">I", 3) + b"hmi"
VIEWING = (
    bytes([0, 0, 0, 0]) + PIXEL_FORMAT                               # SetPixelFormat
    + bytes([2, 0]) + struct.pack(">H", 4) + struct.pack(">iiii", 0, 1, -223, -312)
    + bytes([3, 0]) + struct.pack(">HHHH", 0, 0, 1024, 768)           # FramebufferUpdateRequest
)
INPUT = (
    bytes([4, 1, 0, 0]) + struct.pack(">I", 0x61)                     # KeyEvent down 'a'
    + bytes([4, 0, 0, 0]) + struct.pack(">I", 0x61)
    + bytes([5, 1]) + struct.pack(">HH", 100, 200)                    # PointerEvent
    + bytes([6, 0, 0, 0]) + struct.pack(">I", 5) + b"paste"           # ClientCutText
    + bytes([3, 1]) + struct.pack(">HHHH", 0, 0, 1024, 768)
)

write("filter_vnc", "rfb38-none",
      s(b"RFB 003.008\n") + c(b"RFB 003.008\n") + s(b"\x01\x01") + c(b"\x01")
      + s(b"\x00\x00\x00\x00") + c(b"\x00") + s(SERVER_INIT) + c(VIEWING) + c(INPUT))
write("filter_vnc", "rfb38-vncauth-split",
      s(b"RFB 003.008\n", 5) + c(b"RFB 003.008\n", 3) + s(b"\x02\x01\x02") + c(b"\x02")
      + s(bytes(range(16)), 7) + c(bytes(range(16, 32)), 5) + s(b"\x00\x00\x00\x00", 1)
      + c(b"\x01") + s(SERVER_INIT, 11) + c(VIEWING + INPUT, 3))
write("filter_vnc", "rfb37",
      s(b"RFB 003.007\n") + c(b"RFB 003.007\n") + s(b"\x01\x01") + c(b"\x01")
      + c(b"\x01") + s(SERVER_INIT) + c(INPUT + VIEWING, 2))
write("filter_vnc", "rfb33",
      s(b"RFB 003.003\n") + c(b"RFB 003.003\n") + s(b"\x00\x00\x00\x01") + c(b"\x00")
      + s(SERVER_INIT) + c(VIEWING + INPUT))
write("filter_vnc", "rfb38-failed",
      s(b"RFB 003.008\n") + c(b"RFB 003.008\n") + s(b"\x01\x02") + c(b"\x02")
      + s(bytes(16)) + c(bytes(16)) + s(b"\x00\x00\x00\x01\x00\x00\x00\x04nope"))

# --- socks5: a greeting, then a request.
GREET = bytes([5, 2, 0, 2])
write("socks5", "ipv4", GREET + bytes([5, 1, 0, 1, 10, 0, 0, 5]) + struct.pack(">H", 502))
write("socks5", "ipv6", bytes([5, 1, 0]) + bytes([5, 1, 0, 4])
      + bytes.fromhex("fd000000000000000000000000000007") + struct.pack(">H", 5900))
write("socks5", "domain", GREET + bytes([5, 1, 0, 3, 7]) + b"plc.lan" + struct.pack(">H", 80))
write("socks5", "bind", GREET + bytes([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]))
write("socks5", "userpass-only", bytes([5, 1, 2]))
write("socks5", "socks4", bytes([4, 1, 0, 80, 127, 0, 0, 1]) + b"user\x00")

# --- tunnel_frame: frames as on the wire (the golden bytes of
# proto/tests/frame_golden.rs), one variant per file, and a session.
GOLDEN = {
    "hello": "000000050003010203",
    "welcome": "0000002101ac020462657274044265727480e2cfaa060203686d69010000036c616e00010d",
    "refused": "000000020207",
    "open": "0000001203036c616e010b31302e302e302e313a3830",
    "opened": "000000020401",
    "denied": "00000002050d",
    "stream-closed": "00000003060407",
    "data": "000000040702aabb",
    "close": "000000020800",
    "close-cut": "00000003080108",
    "push-bundle": "00000003090109",
    "push-accepted": "000000030a0008",
    "push-unchanged": "000000030a0108",
    "push-rejected": "0000000d0a0208726f6c6c6261636b0178",
    "failed": "000000040b026e6f",
    "read-only-violation": "000000010c",
    "session-closed-denied": "000000030d0007",
    "session-closed-killed": "000000020d01",
    "hold": "000000010e",
}
for name, hexa in GOLDEN.items():
    write("tunnel_frame", name, bytes.fromhex(hexa))
write("tunnel_frame", "tls-stream", b"".join(bytes.fromhex(GOLDEN[k]) for k in
                                             ["hello", "open", "data", "data", "close"]))
write("tunnel_frame", "too-large", bytes.fromhex("00100001") + b"\x07")
