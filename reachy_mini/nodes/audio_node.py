"""audio_node: publishes audio chunks and the level in dBFS.

Chunks go on `audio/chunk` as std_msgs/Int16MultiArray (no custom
interfaces needed): layout.dim[0] = "samples" (frames), dim[1] =
"channels"; data is interleaved signed 16-bit PCM at `sample_rate`.
The level goes on `audio/level_dbfs` (std_msgs/Float32) at 5 Hz.
"""
from __future__ import annotations

import math
import time

from rclpy.node import Node
from std_msgs.msg import Float32, Int16MultiArray, MultiArrayDimension

from ..audio_core import SyntheticAudio, clipped_fraction, level_dbfs
from ..diag import ERROR, WARN, FrequencyStatus, FrequencyStatusParam, Updater, level_byte
from ..params import P, declare, run_node

SPECS = [
    P("use_sim", False, "synthetic tone instead of a capture device"),
    P("device", "auto", "'auto' (XVF3800), 'sim' or an ALSA/PortAudio device name"),
    P("sample_rate", 16000, "samples per second", 8000, 48000),
    P("channels", 1, "channels", 1, 8),
    P("chunk_ms", 100, "chunk length (ms)", 10, 1000),
    P("silence_warn_s", 5.0, "WARN after this long of digital silence", 0.5, 3600.0),
]


class AudioNode(Node):
    def __init__(self) -> None:
        super().__init__("audio_node")
        self.p = p = declare(self, SPECS)
        self.sim = p["use_sim"] or p["device"] == "sim"
        self.source = SyntheticAudio(p["sample_rate"], p["channels"]) if self.sim else None
        self.frames = p["sample_rate"] * p["chunk_ms"] // 1000
        self.pub = self.create_publisher(Int16MultiArray, "audio/chunk", 10)
        self.level_pub = self.create_publisher(Float32, "audio/level_dbfs", 10)
        rate = 1000.0 / p["chunk_ms"]
        self.freq = FrequencyStatus(FrequencyStatusParam({"min": rate, "max": rate}, 0.1, 5), "chunk rate")
        self.level = -math.inf
        self.clip = 0.0
        self.silent_since = None
        self.updater = Updater(self, period=1.0)
        self.updater.setHardwareID("usb:38fb:1001" if not self.sim else "audio:synthetic")
        self.updater.add("capture", self._diag)
        self.create_timer(p["chunk_ms"] / 1000.0, self._tick)
        self.create_timer(0.2, lambda: self.level_pub.publish(Float32(data=float(max(self.level, -120.0)))))

    def _tick(self) -> None:
        if self.source is None:
            return
        pcm = self.source.read(self.frames)
        msg = Int16MultiArray()
        msg.layout.dim = [MultiArrayDimension(label="samples", size=pcm.shape[0], stride=pcm.size),
                          MultiArrayDimension(label="channels", size=pcm.shape[1], stride=pcm.shape[1])]
        msg.data = pcm.reshape(-1).tolist()
        self.pub.publish(msg)
        self.freq.tick()
        self.level = level_dbfs(pcm)
        self.clip = clipped_fraction(pcm)
        if self.level == -math.inf:
            self.silent_since = self.silent_since or time.monotonic()
        else:
            self.silent_since = None

    def _diag(self, st):
        if self.source is None:
            st.summary(level_byte(ERROR), f"device {self.p['device']!r}: ALSA capture is not available in this build")
            return st
        self.freq.run(st)
        if self.silent_since and time.monotonic() - self.silent_since > self.p["silence_warn_s"]:
            st.mergeSummary(level_byte(WARN), f"digital silence for {time.monotonic() - self.silent_since:.0f} s")
        if self.clip > 0.01:
            st.mergeSummary(level_byte(WARN), f"clipping ({self.clip:.1%} of samples)")
        st.add("device", "synthetic" if self.sim else self.p["device"])
        st.add("level (dBFS)", f"{self.level:.1f}")
        st.add("sample rate", self.p["sample_rate"])
        st.add("channels", self.p["channels"])
        st.add("overflows", 0)
        return st

def main(args=None) -> int:
    return run_node(AudioNode, "audio_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
