"""A simulated XL330/XC330 servo: control table, first-order position
response, thermal model, hardware errors with shutdown and alert bit."""
from __future__ import annotations

import math
import random

# Control table addresses (XL330 e-manual).
MODEL_NUMBER, FIRMWARE, ID, BAUD, RETURN_DELAY = 0, 6, 7, 8, 9
OPERATING_MODE, HOMING_OFFSET = 11, 20
TEMPERATURE_LIMIT, MAX_VOLTAGE, MIN_VOLTAGE = 31, 32, 34
MAX_POSITION_LIMIT, MIN_POSITION_LIMIT = 48, 52     # EEPROM, 4 bytes each
SHUTDOWN, TORQUE_ENABLE, LED, STATUS_RETURN_LEVEL, HW_ERROR = 63, 64, 65, 68, 70
P_GAIN, I_GAIN, D_GAIN = 84, 82, 80
GOAL_CURRENT, PROFILE_VELOCITY, GOAL_POSITION = 102, 112, 116
PROFILE_VELOCITY_UNIT_RPM = 0.229     # RAM; 0 = no limit (the default, and after a reboot)
PRESENT_CURRENT, PRESENT_VELOCITY, PRESENT_POSITION = 126, 128, 132
PRESENT_VOLTAGE, PRESENT_TEMPERATURE = 144, 146
TABLE_SIZE = 147
# EEPROM area (0..63) is read-only while torque is on.
EEPROM_END = 64

# hardware_error_status bits
HW_VOLTAGE, HW_OVERHEAT, HW_ENCODER, HW_SHOCK, HW_OVERLOAD = 0x01, 0x04, 0x08, 0x10, 0x20
FAULT_BITS = {"voltage": HW_VOLTAGE, "overheat": HW_OVERHEAT, "encoder": HW_ENCODER,
              "shock": HW_SHOCK, "overload": HW_OVERLOAD}

MODEL_NUMBERS = {"XL330-M077": 1190, "XL330-M288": 1200, "XC330-M288": 1240}

# status error numbers
ERR_INSTRUCTION, ERR_DATA_RANGE, ERR_DATA_LENGTH, ERR_DATA_LIMIT, ERR_ACCESS = 2, 4, 5, 6, 7


class Servo:
    """One simulated servo. Physics advance with `step(dt)`."""

    AMBIENT_C = 30.0
    TAU_POS_S = 0.03          # first-order position response
    TAU_THERMAL_S = 120.0     # thermal time constant
    HEAT_C_PER_A2 = 900.0     # steady-state rise per A^2

    def __init__(self, id_: int, model: str = "XL330-M288", rng: random.Random | None = None) -> None:
        self.id = id_
        self.model = model
        self.rng = rng or random.Random(id_)
        self.t = bytearray(TABLE_SIZE)
        self._u16(MODEL_NUMBER, MODEL_NUMBERS.get(model, 1200))
        self.t[FIRMWARE] = 52
        self.t[ID] = id_
        self.t[BAUD] = 3  # 1 Mbps
        self.t[RETURN_DELAY] = 0
        self.t[OPERATING_MODE] = 3
        self.t[TEMPERATURE_LIMIT] = 70
        self._u16(MAX_VOLTAGE, 70)
        self._u16(MIN_VOLTAGE, 35)
        self.set_position_limits(0, 4095)   # the e-manual's defaults
        self.t[SHUTDOWN] = HW_OVERHEAT | HW_SHOCK | HW_ENCODER | HW_OVERLOAD | HW_VOLTAGE
        self.t[STATUS_RETURN_LEVEL] = 2
        self._u16(P_GAIN, 400)
        self.pos = 2048.0 + self.rng.uniform(-20, 20)
        self._i32(GOAL_POSITION, int(self.pos))
        self.temperature = self.AMBIENT_C + self.rng.uniform(0, 2)
        self.voltage = 5.0
        self.load_a = 0.04 if model != "XL330-M077" else 0.01  # gravity load
        self.forced: set[str] = set()   # injected fault causes still present
        self.muted = False
        self.reboots = 0
        self._sync_registers(0.0)

    # --- raw helpers
    def _u16(self, a: int, v: int) -> None:
        self.t[a:a + 2] = int(v & 0xFFFF).to_bytes(2, "little")

    def _i32(self, a: int, v: int) -> None:
        self.t[a:a + 4] = int(v).to_bytes(4, "little", signed=True)

    def position_limits(self) -> tuple[int, int]:
        return (int.from_bytes(self.t[MIN_POSITION_LIMIT:MIN_POSITION_LIMIT + 4], "little"),
                int.from_bytes(self.t[MAX_POSITION_LIMIT:MAX_POSITION_LIMIT + 4], "little"))

    def set_position_limits(self, lo: int, hi: int) -> None:
        """EEPROM min/max position limits (position mode: 0..4095)."""
        if not 0 <= lo <= hi <= 4095:
            raise ValueError(f"position limits must satisfy 0 <= min <= max <= 4095, got {lo}, {hi}")
        self._i32(MIN_POSITION_LIMIT, lo)
        self._i32(MAX_POSITION_LIMIT, hi)

    def goal(self) -> int:
        return int.from_bytes(self.t[GOAL_POSITION:GOAL_POSITION + 4], "little", signed=True)

    @property
    def torque(self) -> bool:
        return bool(self.t[TORQUE_ENABLE])

    @property
    def hw_error(self) -> int:
        return self.t[HW_ERROR]

    def status_error_byte(self, code: int = 0) -> int:
        return (0x80 if self.t[HW_ERROR] else 0) | code

    # --- faults
    def inject(self, kind: str) -> None:
        if kind not in FAULT_BITS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULT_BITS)}")
        self.forced.add(kind)
        if kind == "overheat":
            self.temperature = max(self.temperature, self.t[TEMPERATURE_LIMIT] + 8.0)
        if kind == "voltage":
            self.voltage = 9.6
        self._latch(FAULT_BITS[kind])

    def clear_causes(self) -> None:
        """The fault's cause goes away; latched bits stay until reboot."""
        if "overheat" in self.forced:
            self.temperature = self.AMBIENT_C + 5.0
        if "voltage" in self.forced:
            self.voltage = 5.0
        self.forced.clear()

    def _latch(self, bit: int) -> None:
        self.t[HW_ERROR] |= bit
        if self.t[SHUTDOWN] & bit:
            self.t[TORQUE_ENABLE] = 0

    def reboot(self) -> None:
        self.reboots += 1
        self.t[HW_ERROR] = 0
        self.t[TORQUE_ENABLE] = 0
        self._i32(PROFILE_VELOCITY, 0)   # RAM back to its default
        self._check_limits()  # a cause still present latches again at once
        for kind in self.forced:
            self._latch(FAULT_BITS[kind])

    def _check_limits(self) -> None:
        if self.temperature > self.t[TEMPERATURE_LIMIT]:
            self._latch(HW_OVERHEAT)
        vmax = int.from_bytes(self.t[MAX_VOLTAGE:MAX_VOLTAGE + 2], "little") / 10
        vmin = int.from_bytes(self.t[MIN_VOLTAGE:MIN_VOLTAGE + 2], "little") / 10
        if not vmin <= self.voltage <= vmax:
            self._latch(HW_VOLTAGE)

    # --- physics
    def step(self, dt: float) -> None:
        if dt <= 0:
            return
        err = 0.0
        if self.torque:
            g = self.goal()
            a = 1.0 - math.exp(-dt / self.TAU_POS_S)
            step = (g - self.pos) * a
            pv = int.from_bytes(self.t[PROFILE_VELOCITY:PROFILE_VELOCITY + 4], "little")
            if pv:   # the servo's own velocity profile (velocity-based, acceleration not modelled)
                vmax = pv * PROFILE_VELOCITY_UNIT_RPM / 60.0 * 4096 * dt
                step = max(-vmax, min(vmax, step))
            self.pos += step
            err = g - self.pos
            amps = self.load_a + min(abs(err) * 0.002, 1.2)
        else:
            amps = 0.0
        if "overload" in self.forced:
            amps = 1.5
        self.current_a = amps if self.torque or "overload" in self.forced else 0.0
        target = self.AMBIENT_C + self.HEAT_C_PER_A2 * self.current_a ** 2
        if "overheat" in self.forced:
            target = self.t[TEMPERATURE_LIMIT] + 10.0
        k = 1.0 - math.exp(-dt / self.TAU_THERMAL_S)
        self.temperature += (target - self.temperature) * k
        self._check_limits()
        self._sync_registers(err)

    def _sync_registers(self, err: float) -> None:
        cur = getattr(self, "current_a", 0.0)
        sign = -1 if err < 0 else 1
        self.t[PRESENT_CURRENT:PRESENT_CURRENT + 2] = int(sign * cur * 1000).to_bytes(2, "little", signed=True)
        self._i32(PRESENT_VELOCITY, int(err / 10))
        self._i32(PRESENT_POSITION, int(round(self.pos)))
        self._u16(PRESENT_VOLTAGE, int(round(self.voltage * 10)))
        self.t[PRESENT_TEMPERATURE] = max(0, min(255, int(round(self.temperature))))

    # --- register access (returns status error number, 0 = ok)
    def read(self, address: int, length: int) -> tuple[int, bytes]:
        if length == 0 or address + length > TABLE_SIZE:
            return ERR_DATA_RANGE, b""
        return 0, bytes(self.t[address:address + length])

    def write(self, address: int, data: bytes) -> int:
        end = address + len(data)
        if not data or end > TABLE_SIZE:
            return ERR_DATA_RANGE
        if address < EEPROM_END and self.torque:
            return ERR_ACCESS
        if address <= HW_ERROR < end or address >= PRESENT_CURRENT:
            return ERR_ACCESS  # read-only area
        if address <= GOAL_POSITION and GOAL_POSITION + 4 <= end:
            # position mode: a goal beyond the EEPROM limits is refused, not written
            lo, hi = self.position_limits()
            g = int.from_bytes(data[GOAL_POSITION - address:GOAL_POSITION - address + 4], "little", signed=True)
            if not lo <= g <= hi:
                return ERR_DATA_LIMIT
        if address <= TORQUE_ENABLE < end:
            v = data[TORQUE_ENABLE - address]
            if v > 1:
                return ERR_DATA_RANGE
            if v and self.t[HW_ERROR]:
                # In shutdown: torque cannot come back until reboot.
                data = bytearray(data)
                data[TORQUE_ENABLE - address] = 0
        self.t[address:end] = data
        return 0
