"""audio_node: audio chunks and level, from a PortAudio/ALSA capture device
(`sounddevice`; by name or `auto` = the XVF3800 board) or the synthetic
source under use_sim. Capture runs on its own thread (capture.SourceLoop),
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

from reachy_mini.core.media.audio import LevelMeter, SoundDeviceSource, SyntheticAudio
from reachy_mini.ros import qos
from reachy_mini.core.media.capture import SourceLoop, rate_status
from reachy_mini.core.levels import ERROR, Level, WARN
from reachy_mini.ros.diagnostics import Updater
from reachy_mini.ros.params import Param, declare, run_node

SPECS = [
    Param("use_sim", False, "synthetic tone instead of a capture device"),
    Param("device", "auto", "'auto' (XVF3800), 'sim' or a PortAudio/ALSA device name"),
    Param("sample_rate", 16000, "samples per second", 8000, 48000),
    Param("channels", 1, "channels", 1, 8),
    Param("chunk_ms", 100, "chunk length (ms)", 10, 1000),
    Param("silence_warn_s", 5.0, "WARN after this long of digital silence", 0.1, 3600.0, runtime=True),
    Param("clip_warn_fraction", 0.001, "WARN when this fraction of samples is at full scale", 0.0, 1.0, runtime=True),
    Param("stall_timeout_s", 1.0, "no audio for this long: device lost, reopen", 0.1, 60.0),
]


class AudioNode(Node):
    def __init__(self) -> None:
        super().__init__("audio_node")
        self.p = p = declare(self, SPECS)
        self.sim = p["use_sim"] or p["device"] == "sim"
        frames = p["sample_rate"] * p["chunk_ms"] // 1000
        self.src = None
        self.meter = LevelMeter()
        self.pub = self.create_publisher(Int16MultiArray, "audio/chunk", qos.AUDIO)
        self.level_pub = self.create_publisher(Float32, "audio/level_dbfs", qos.AUDIO_LEVEL)

        def make():
            self.src = SyntheticAudio(p["sample_rate"], p["channels"], frames) if self.sim else \
                SoundDeviceSource(p["device"], p["sample_rate"], p["channels"], frames)
            return self.src
        self.overflows_before = 0
        self.loop = SourceLoop(make, self._publish, 1000.0 / p["chunk_ms"], p["stall_timeout_s"]).start()
        self.updater = Updater(self)
        self.updater.setHardwareID("audio:synthetic" if self.sim else "usb:38fb:1001" if p["device"] == "auto"
                                   else f"alsa:{p['device']}")
        self.updater.add("microphone", self._diag)
        self.create_timer(0.2, lambda: self.level_pub.publish(Float32(data=float(max(self.meter.level, -120.0)))))

    def _publish(self, pcm, now: float) -> None:  # capture thread
        msg = Int16MultiArray()
        msg.layout.dim = [MultiArrayDimension(label="samples", size=pcm.shape[0], stride=pcm.size),
                          MultiArrayDimension(label="channels", size=pcm.shape[1], stride=pcm.shape[1])]
        data = array.array("h")
        data.frombytes(pcm.astype("<i2", copy=False).tobytes())   # no per-sample Python objects
        msg.data = data
        self.pub.publish(msg)
        self.meter.update(pcm, now)

    def _diag(self, st):
        s = self.loop.snapshot()
        now = time.monotonic()
        rate = 1000.0 / self.p["chunk_ms"]
        lv, msg = rate_status(s["rate"], rate)
        st.summary(Level(lv).to_bytes(), msg)
        if not s["present"]:
            st.summary(Level(ERROR).to_bytes(), f"device not available: {s['last_error']}; retrying")
        elif s["age"] > self.p["stall_timeout_s"]:
            st.summary(Level(ERROR).to_bytes(), f"no audio for {s['age']:.1f} s")
        else:
            silent = self.meter.silent_for(now)
            if silent > self.p["silence_warn_s"]:
                st.mergeSummary(Level(WARN).to_bytes(), f"digital silence for {silent:.1f} s")
            if self.meter.clip > self.p["clip_warn_fraction"]:
                st.mergeSummary(Level(WARN).to_bytes(), f"clipping: {self.meter.clip:.1%} of samples at full scale")
        src = self.src
        st.add("device", str(s["description"] or self.p["device"]))
        st.add("device present", str(s["present"]).lower())
        st.add("sample rate (Hz)", str(self.p["sample_rate"]))
        st.add("channels", str(self.p["channels"]))
        st.add("chunk rate (Hz)", f"{s['rate']:.2f}")
        st.add("chunks", str(s["count"]))
        st.add("level (dBFS)", f"{self.meter.level:.1f}")
        st.add("clipped chunks", str(self.meter.clipped_chunks))
        st.add("overflows", str(getattr(src, "overflows", 0) + getattr(src, "queue_drops", 0) + s["dropped"]))
        st.add("device opens", str(s["opens"]))
        st.add("device losses", str(s["losses"]))
        st.add("last error", str(s["last_error"] or ""))
        return st

    def shutdown(self) -> None:
        self.loop.stop()
        if self.src is not None:
            self.src.close()


def main(args=None) -> int:
    return run_node(AudioNode, "audio_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
