"""Device side of Dynamixel Protocol 2.0, written independently of the Rust
driver so that each checks the other: CRC-16, stuffing, instruction parsing
and status packet encoding."""
from __future__ import annotations

from dataclasses import dataclass

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE
PING, READ, WRITE, REBOOT, STATUS, SYNC_READ, SYNC_WRITE = 0x01, 0x02, 0x03, 0x08, 0x55, 0x82, 0x83
MAX_LEN = 1024


def _table() -> list[int]:
    t = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) if c & 0x8000 else (c << 1)
        t.append(c & 0xFFFF)
    return t


_CRC = _table()


def crc16(data: bytes) -> int:
    crc = 0
    tbl = _CRC
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ tbl[((crc >> 8) ^ b) & 0xFF]
    return crc


def stuff(payload: bytes) -> bytes:
    if b"\xff\xff\xfd" not in payload:
        return payload
    out = bytearray()
    for b in payload:
        out.append(b)
        if len(out) >= 3 and out[-3:] == b"\xff\xff\xfd":
            out.append(0xFD)
    return bytes(out)


def unstuff(payload: bytes) -> bytes:
    return payload.replace(b"\xff\xff\xfd\xfd", b"\xff\xff\xfd")


def encode(id_: int, instruction: int, params: bytes) -> bytes:
    body = stuff(bytes([instruction]) + params)
    pkt = HEADER + bytes([id_]) + (len(body) + 2).to_bytes(2, "little") + body
    return pkt + crc16(pkt).to_bytes(2, "little")


def encode_status(id_: int, error: int, params: bytes = b"") -> bytes:
    return encode(id_, STATUS, bytes([error]) + params)


@dataclass
class Instruction:
    id: int
    instruction: int
    params: bytes
    wire_len: int


class InstructionParser:
    """Incremental parser for host->device packets, with resync. Bad CRCs
    are counted (devices drop such packets silently)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.crc_errors = 0
        self.garbage = 0

    def feed(self, data: bytes) -> list[Instruction]:
        self.buf += data
        out = []
        while True:
            i = self.buf.find(HEADER)
            if i < 0:
                keep = next((k for k in (3, 2, 1) if self.buf.endswith(HEADER[:k])), 0)
                self.garbage += len(self.buf) - keep
                del self.buf[: len(self.buf) - keep]
                return out
            if i:
                self.garbage += i
                del self.buf[:i]
            if len(self.buf) < 7:
                return out
            length = int.from_bytes(self.buf[5:7], "little")
            if not 3 <= length <= MAX_LEN:
                del self.buf[:1]
                continue
            total = 7 + length
            nxt = self.buf.find(HEADER, 4, total)
            if nxt >= 0:  # truncated frame: resync on the next header
                self.garbage += nxt
                del self.buf[:nxt]
                continue
            if len(self.buf) < total:
                return out
            frame = bytes(self.buf[:total])
            if crc16(frame[:-2]) != int.from_bytes(frame[-2:], "little"):
                self.crc_errors += 1
                del self.buf[:1]
                continue
            del self.buf[:total]
            payload = unstuff(frame[7:-2])
            out.append(Instruction(frame[4], payload[0], payload[1:], total))
