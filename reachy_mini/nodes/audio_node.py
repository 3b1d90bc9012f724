"""audio_node: the XVF3800 sound board in ROS — microphone, speaker, direction
of arrival, volume — shared with the vendor SDK's apps.

Capture. `device` 'auto': the shared capture PCM `capture_pcm`
(reachymini_audio_src, dsnoop) through arecord when ~/.asoundrc defines the
board's shared PCMs (the vendor SDK's own test; on the robot the node writes
the entries when the board's card is present and the file lacks them, and
`reachy-mini-service install` does it), else the board through PortAudio
(`sounddevice`, exclusive). 'alsa:<pcm>' any ALSA PCM through arecord; 'sim'
the synthetic source. Capture runs on its own thread
(core/media/capture.SourceLoop), which reopens a lost device with backoff.

Chunks: `audio/chunk`, std_msgs/Int16MultiArray (the most standard type
without custom interfaces): layout.dim[0] "samples" (frames per chunk),
dim[1] "channels"; data is interleaved signed 16-bit PCM at `sample_rate`
(16 kHz). Level: `audio/level_dbfs` (std_msgs/Float32, RMS dBFS, -120 for
digital silence) at 5 Hz.

Speaker. `audio/out` takes the same message and sample format as
`audio/chunk` (int16 interleaved, dims samples/channels, at `sample_rate`)
and plays it on `playback_pcm` (reachymini_audio_sink, dmix) in arrival
order; `audio/play_file` (std_msgs/String) plays a WAV/OGG/FLAC file by
path (an unreadable one is refused: logged and shown on the diagnostic);
service `audio/stop` (std_srvs/Trigger) drops what is queued.
`speaker_volume` / `microphone_gain` (0-100 %, settable at run time) scale
what the node plays and captures.

Direction of arrival: `audio/direction` (geometry_msgs/Vector3Stamped, a unit
vector in the `mic_array` frame: x forward, y left) and `audio/speech`
(std_msgs/Bool), read from the board over USB (pyusb, the vendor's XVF3800
protocol) at `doa_rate_hz` (10 Hz). An absent or silent board is a WARN on
the microphone item, retried with backoff, never a crash.

Release (vendor /api/media/release): service `audio/release`
(std_srvs/SetBool, data true = give the PCMs and the USB board up, false =
take them again); while released the microphone item is OK "released for
apps" with key "released" = "true". Key "shared_pcm" says whether capture
runs through the shared PCM (what the SDK status' no_media needs).
"""
from __future__ import annotations

import array
import os
import time

from geometry_msgs.msg import Vector3Stamped
from rclpy.node import Node
from std_msgs.msg import Bool, Float32, Int16MultiArray, MultiArrayDimension, String
from std_srvs.srv import SetBool, Trigger

from reachy_mini.core.levels import OK, WARN, Level
from reachy_mini.core.media import alsa, xvf3800
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


class MicrophoneCheck(CaptureCheck):
    """The capture check, OK "released for apps" while released."""

    def __init__(self, node: "AudioNode", *args) -> None:
        super().__init__(*args)
        self.node = node

    def run(self, stat):
        if not self.node.released:
            return super().run(stat)
        stat.summary(Level(OK).to_bytes(), "released for apps")
        for k, v in self.values(self.loop.snapshot()):
            stat.add(k, str(v))
        return stat


class AudioNode(Node):
    def __init__(self) -> None:
        super().__init__("audio_node")
        self.cfg = c = declare(self, AudioConfig)
        self.robot = robot_name(self.cfg.robot_name, self.get_namespace())
        self.sim = c.simulated
        frames = c.frames_per_chunk
        self.src = None
        self.released = False
        self.meter = LevelMeter()
        self.pub = self.create_publisher(Int16MultiArray, "audio/chunk", qos.AUDIO)
        self.level_pub = self.create_publisher(Float32, "audio/level_dbfs", qos.AUDIO_LEVEL)
        self.asoundrc = ""
        if c.device == "auto" and not self.sim and os.path.isdir(f"/proc/asound/{alsa.CARD}") \
                and not alsa.shared_pcms_defined():
            try:
                path, done = alsa.install_asoundrc()
                self.asoundrc = f"{path} {done}"
                self.get_logger().info(f"shared PCMs {alsa.SRC}/{alsa.SINK}: {path} {done}")
            except OSError as e:
                self.asoundrc = f"cannot write ~/.asoundrc: {e}"
                self.get_logger().warning(self.asoundrc)
        self.capture_pcm = c.device[5:] if c.device.startswith("alsa:") else \
            c.capture_pcm if c.device == "auto" and not self.sim and alsa.shared_pcms_defined() else None
        def make():
            if self.sim:
                self.src = SyntheticAudio(c.sample_rate, c.channels, frames)
            elif self.capture_pcm:
                self.src = alsa.PcmSource(self.capture_pcm, c.channels, frames, paced=c.pcm_clock)
            else:
                self.src = SoundDeviceSource(c.device, c.sample_rate, c.channels, frames)
            return self.src
        self.loop = SourceLoop(make, self._publish, c.chunk_rate_hz, c.stall_timeout_s).start()

        # speaker
        self.player = alsa.Player("null" if self.sim else c.playback_pcm, lambda: float(self.cfg.speaker_volume))
        self.out_rejected = 0
        self.files_played = 0
        self.file_error = ""
        self.create_subscription(Int16MultiArray, "audio/out", self._on_out, qos.AUDIO)
        self.create_subscription(String, "audio/play_file", self._on_play_file, 10)
        self.create_service(Trigger, "audio/stop", self._on_stop)
        self.create_service(SetBool, "audio/release", self._on_release)

        # direction of arrival
        self.doa = None
        if c.board_mode != "off":
            self.dir_pub = self.create_publisher(Vector3Stamped, "audio/direction", 10)
            self.speech_pub = self.create_publisher(Bool, "audio/speech", 10)
            self.doa = xvf3800.DoaReader(c.board_mode, c.doa_rate_hz, self._on_doa).start()

        self.updater = RobotUpdater(self, self.robot)
        self.updater.setHardwareID(c.hardware_id)
        self.updater.add(MicrophoneCheck(self, "microphone", self.loop, "audio", lambda: c.chunk_rate_hz,
                                         lambda: c.stall_timeout_s, self._values, self._signal))
        self.create_timer(0.2, lambda: self.level_pub.publish(Float32(data=float(max(self.meter.level, -120.0)))))

    # ---- capture
    def _publish(self, pcm, now: float) -> None:  # capture thread
        pcm = alsa.apply_gain(pcm, float(self.cfg.microphone_gain))   # runtime parameter, read live
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

    # ---- speaker
    def _on_out(self, msg: Int16MultiArray) -> None:
        import numpy as np

        dims = msg.layout.dim
        ch = dims[1].size if len(dims) >= 2 else 1
        n = len(msg.data)
        if ch < 1 or n % ch or (dims and dims[0].size and dims[0].size * ch != n):
            self.out_rejected += 1
            self.get_logger().warning(f"audio/out: layout {[(d.label, d.size) for d in dims]} does not match "
                                      f"{n} samples; chunk dropped", throttle_duration_sec=5.0)
            return
        if self.released or n == 0:
            return
        pcm = np.frombuffer(array.array("h", msg.data).tobytes(), dtype="<i2").reshape(-1, ch)
        if not self.player.play(pcm, self.cfg.sample_rate):
            self.get_logger().warning("audio/out: playback queue full (30 s); chunk dropped",
                                      throttle_duration_sec=5.0)

    def _on_play_file(self, msg: String) -> None:
        if self.released:
            self.file_error = f"{msg.data}: refused, the speaker is released for apps"
            self.get_logger().warning(self.file_error)
            return
        try:
            pcm, rate = alsa.read_sound_file(msg.data)
        except ValueError as e:
            self.file_error = str(e)
            self.get_logger().warning(f"audio/play_file refused: {e}")
            return
        if self.player.play(pcm, rate):
            self.files_played += 1
        else:
            self.file_error = f"{msg.data}: playback queue full"

    def _on_stop(self, _req, resp):
        n = self.player.stop()
        resp.success, resp.message = True, f"dropped {n / alsa.PCM_RATE:.2f} s of queued sound"
        return resp

    # ---- release / acquire
    def _on_release(self, req, resp):
        if req.data:
            self.player.stop()
            closed = self.loop.hold(True)
            if self.doa:
                self.doa.hold(True)
            self.released = True
            resp.success = closed
            resp.message = "audio released for apps" if closed else "capture did not close within 5 s"
        else:
            self.loop.hold(False)
            if self.doa:
                self.doa.hold(False)
            self.released = False
            resp.success, resp.message = True, "audio acquired"
        self.get_logger().info(resp.message)
        return resp

    # ---- direction of arrival
    def _on_doa(self, angle: float, speech: bool) -> None:   # doa thread
        m = Vector3Stamped()
        m.header.stamp = self.get_clock().now().to_msg()
        m.header.frame_id = self.cfg.frame_prefix + "mic_array"
        m.vector.x, m.vector.y, m.vector.z = xvf3800.doa_vector(angle)
        self.dir_pub.publish(m)
        self.speech_pub.publish(Bool(data=speech))

    # ---- diagnostics
    def _signal(self, s: dict) -> list:
        """Silence and clipping, when the device delivers; the board; playback."""
        out, c, silent = [], self.cfg, self.meter.silent_for(time.monotonic())
        if silent > c.silence_warn_s:
            out.append((WARN, f"digital silence for {silent:.1f} s"))
        if self.meter.clip > c.clip_warn_fraction:
            out.append((WARN, f"clipping: {self.meter.clip:.1%} of samples at full scale"))
        if self.doa is not None and not self.doa.present and self.doa.failures:
            out.append((WARN, f"direction of arrival unavailable: {self.doa.error}; retrying"))
        if self.player.failing:
            out.append((WARN, f"speaker: {self.player.last_error}; retried at the next sound"))
        return out

    def _values(self, s: dict):
        c, src, p, d = self.cfg, self.src, self.player, self.doa
        shared = bool(self.capture_pcm) and s["present"] and not self.released
        vals = [("device", s["description"] or c.device), ("device present", str(s["present"]).lower()),
                ("sample rate (Hz)", c.sample_rate), ("channels", c.channels), ("chunk rate (Hz)", f"{s['rate']:.2f}"),
                ("chunks", s["count"]), ("level (dBFS)", f"{self.meter.level:.1f}"),
                ("clipped chunks", self.meter.clipped_chunks),
                ("overflows", getattr(src, "overflows", 0) + getattr(src, "queue_drops", 0) + s["dropped"]),
                ("device opens", s["opens"]), ("device losses", s["losses"]), ("last error", s["last_error"] or ""),
                ("shared_pcm", str(shared).lower()), ("released", str(self.released).lower()),
                ("playback device", p.pcm), ("playing", str(p.playing).lower()),
                ("played (s)", f"{p.played_frames / alsa.PCM_RATE:.2f}"),
                ("playback underruns", p.underruns), ("playback errors", p.errors),
                ("last playback error", p.last_error), ("files played", self.files_played),
                ("last refused file", self.file_error), ("audio/out rejected", self.out_rejected),
                ("speaker volume (%)", c.speaker_volume), ("microphone gain (%)", c.microphone_gain)]
        if self.asoundrc:
            vals.append(("asoundrc", self.asoundrc))
        if d is not None:
            vals += [("doa board", "present" if d.present else f"absent: {d.error}" if d.failures else "opening"),
                     ("doa reads", d.reads),
                     ("direction (rad)", "" if d.angle is None else f"{d.angle:.3f}"),
                     ("speech", str(d.speech).lower())]
        return vals

    def workers(self) -> dict:
        w = {"capture": self.loop.thread, "playback": self.player.thread}
        if self.doa is not None:
            w["doa"] = self.doa.thread
        return w

    def shutdown(self) -> None:
        self.loop.stop()
        if self.src is not None:
            self.src.close()
        self.player.close()
        if self.doa is not None:
            self.doa.stop()


NODE = AudioNode   # nodes/robot.py


def main(args=None) -> int:
    return run_node(AudioNode, "audio_node", args)


if __name__ == "__main__":
    import sys

    sys.exit(main())
