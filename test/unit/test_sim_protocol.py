"""The simulator's device-side codec against the e-manual vectors, and
against the Rust driver's CRC (two independent implementations)."""
import random

from reachy_mini import _driver
from reachy_mini.sim import protocol as P
from reachy_mini.sim.servo import HW_OVERHEAT, Servo


def test_manual_vectors():
    assert P.encode(1, P.PING, b"") == bytes.fromhex("FFFFFD0001030001194E")
    assert P.encode_status(1, 0, bytes([6, 4, 0x26])) == bytes.fromhex("FFFFFD00010700550006042665 5D".replace(" ", ""))
    assert P.encode_status(1, 0, (166).to_bytes(4, "little")) == bytes.fromhex("FFFFFD0001080055 00A60000008CC0".replace(" ", ""))
    assert P.encode(0xFE, P.SYNC_READ, bytes([0x84, 0, 4, 0, 1, 2])) == bytes.fromhex("FFFFFD00FE0900828400040001 02CEFA".replace(" ", ""))


def test_crc_matches_rust():
    rng = random.Random(1)
    for _ in range(200):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
        assert P.crc16(data) == _driver.crc16(data)


def test_parser_resyncs_and_counts_crc():
    p = P.InstructionParser()
    good = P.encode(3, P.READ, bytes([132, 0, 4, 0]))
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    out = p.feed(b"\x00\x13\xff" + bytes(bad) + good[:5])
    out += p.feed(good[5:])
    assert [(i.id, i.instruction) for i in out] == [(3, P.READ)]
    assert p.crc_errors == 1


def test_stuffing_roundtrip():
    rng = random.Random(2)
    for _ in range(300):
        raw = bytes(rng.choice([0xFF, 0xFD, 0x00, 7]) for _ in range(rng.randrange(0, 20)))
        assert P.unstuff(P.stuff(raw)) == raw


def test_servo_overheat_latches_until_reboot():
    s = Servo(11)
    s.write(64, b"\x01")
    s.inject("overheat")
    assert s.hw_error & HW_OVERHEAT and not s.torque
    s.clear_causes()
    s.step(0.01)
    assert s.hw_error & HW_OVERHEAT, "latched until reboot"
    s.reboot()
    assert s.hw_error == 0


def test_servo_eeprom_position_limits_and_profile_velocity():
    from reachy_mini.sim.servo import ERR_DATA_LIMIT, GOAL_POSITION, PROFILE_VELOCITY, Servo

    s = Servo(11)
    assert s.position_limits() == (0, 4095)
    s.set_position_limits(1000, 3000)
    assert s.read(48, 8) == (0, (3000).to_bytes(4, "little") + (1000).to_bytes(4, "little"))
    assert s.write(GOAL_POSITION, (3001).to_bytes(4, "little")) == ERR_DATA_LIMIT   # refused, not written
    assert s.write(GOAL_POSITION, (2500).to_bytes(4, "little")) == 0 and s.goal() == 2500
    s.write(64, b"\x01")                                   # torque on
    s.write(PROFILE_VELOCITY, (10).to_bytes(4, "little"))  # 2.29 rev/min = 156 ticks/s
    start = s.pos
    s.step(0.1)
    assert abs(s.pos - start) <= 10 * 0.229 / 60 * 4096 * 0.1 + 1e-6
    s.reboot()
    assert s.read(PROFILE_VELOCITY, 4) == (0, bytes(4)), "RAM back to its default after a reboot"
