"""audio_node: audio chunks and level, from a PortAudio/ALSA capture device
(`sounddevice`; by name or `auto` = the XVF3800 board) or the synthetic
source under use_sim. Capture runs on its own thread (core/media/capture.SourceLoop),
which reopens a lost device with backoff.

Chunks: `audio/chunk`, std_msgs/Int16MultiArray (the most standard type
without custom interfaces): layout.dim[0] "samples" (frames per chunk),
dim[1] "channels"; data is interleaved signed 16-bit PCM at `sample_rate`
(16 kHz). It carries no header: stamps and the sample rate are in
diagnostics and parameters. Level: `audio/level_dbfs` (std_msgs/Float32, RMS
dBFS, -120 for digital silence) at 5 Hz.
"""
from __future__ import annotations

import array
import time

from rclpy.node import Node
from std_msgs.msg import Float32, Int16MultiArray, MultiArrayDimension

from reachy_mini.core.levels import WARN
from reachy_mini.core.media.audio import LevelMeter, SoundDeviceSource, SyntheticAudio
from reachy_mini.core.media.capture import SourceLoop
from reachy_mini.core.media.config import AudioConfig
from reachy_mini.ros import qos
from reachy_mini.core.identity import robot_name
from reachy_mini.ros.diagnostics import RobotUpdater
from reachy_mini.ros.params import declare
from reachy_mini.ros.runner import run_node
from reachy_mini.ros.tasks import CaptureCheck

CONFIG = AudioConfig


class AudioNode(Node):
    def __init__(self) -> None:
        super().__init__("audio_node")
        self.cfg = c = declare(self, AudioConfig)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        self.sim = c.simulated
        frames = c.frames_per_chunk
        self.src = None
        self.meter = LevelMeter()
        self.pub = self.create_publisher(Int16MultiArray, "audio/chunk", qos.AUDIO)
        self.level_pub = self.create_publisher(Float32, "audio/level_dbfs", qos.AUDIO_LEVEL)

        def make():
            self.src = SyntheticAudio(c.sample_rate, c.channels, frames) if self.sim else \
                SoundDeviceSource(c.device, c.sample_rate, c.channels, frames)
            return self.src
        self.overflows_before = 0
        self.loop = SourceLoop(make, self._publish, c.chunk_rate_hz, c.stall_timeout_s).start()
        self.updater = RobotUpdater(self, self.robot)
        self.updater.setHardwareID(c.hardware_id)
        self.updater.add(CaptureCheck("microphone", self.loop, "audio", lambda: c.chunk_rate_hz,
                                      lambda: c.stall_timeout_s, self._values, self._signal))
        self.create_timer(0.2, lambda: self.level_pub.publish(Float32(data=float(max(self.meter.level, -120.0)))))

    def _publish(self, pcm, now: float) -> None:  # capture thread
        self.meter.update(pcm, now)
        if self.pub.get_subscription_count() == 0:
            return   # nothing copied for nobody
        msg = Int16MultiArray()
        msg.layout.dim = [MultiArrayDimension(label="samples", size=pcm.shape[0], stride=pcm.size),
                          MultiArrayDimension(label="channels", size=pcm.shape[1], stride=pcm.shape[1])]
        data = array.array("h")
        data.frombytes(pcm.astype("<i2", copy=False).tobytes())   # no per-sample Python objects
        msg.data = data
        self.pub.publish(msg)

    def _signal(self, s: dict) -> list:
        """Silence and clipping, when the device delivers."""
        out, c, silent = [], self.cfg, self.meter.silent_for(time.monotonic())
        if silent > c.silence_warn_s:
            out.append((WARN, f"digital silence for {silent:.1f} s"))
        if self.meter.clip > c.clip_warn_fraction:
            out.append((WARN, f"clipping: {self.meter.clip:.1%} of samples at full scale"))
        return out

    def _values(self, s: dict):
        c, src = self.cfg, self.src
        return [("device", s["description"] or c.device), ("device present", str(s["present"]).lower()),
                ("sample rate (Hz)", c.sample_rate), ("channels", c.channels), ("chunk rate (Hz)", f"{s['rate']:.2f}"),
                ("chunks", s["count"]), ("level (dBFS)", f"{self.meter.level:.1f}"),
                ("clipped chunks", self.meter.clipped_chunks),
                ("overflows", getattr(src, "overflows", 0) + getattr(src, "queue_drops", 0) + s["dropped"]),
                ("device opens", s["opens"]), ("device losses", s["losses"]), ("last error", s["last_error"] or "")]

    def workers(self) -> dict:
        return {"capture": self.loop.thread}

    def shutdown(self) -> None:
        self.loop.stop()
        if self.src is not None:
            self.src.close()


def main(args=None) -> int:
    return run_node(AudioNode, "audio_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
