"""camera_node's and audio_node's typed configurations (their ROS parameters)."""
from __future__ import annotations

from dataclasses import dataclass

from reachy_mini.core.config import NodeConfig, setting
from reachy_mini.core.media.camera import PIXEL_FORMATS
from reachy_mini.core.motors.config import frame_prefix_check


def _camera_device(v: str) -> str | None:
    return None if v in ("auto", "sim") or v.startswith("/") else "must be 'auto', 'sim' or an absolute path"


class _Device:
    """A capture device chosen by `device`, or the synthetic source."""
    use_sim: bool
    device: str

    @property
    def simulated(self) -> bool:
        return self.use_sim or self.device == "sim"


@dataclass
class CameraConfig(_Device, NodeConfig):
    use_sim: bool = setting(False, "synthetic test pattern instead of a device")
    device: str = setting("auto", "'auto' (UVC 38FB:1002), 'sim', a V4L2 device path or a video file; a path "
                          "that does not exist yet is waited for", check=_camera_device)
    width: int = setting(640, "width of camera/image_raw (the capture is resized to it)", 16, 4096)
    height: int = setting(360, "height of camera/image_raw (the capture is resized to it)", 16, 4096)
    capture_width: int = setting(1920, "capture width (1920x1080: the Lite camera's mode the SDK socket serves)",
                                 16, 4096)
    capture_height: int = setting(1080, "capture height", 16, 4096)
    fps: float = setting(30.0, "target capture and camera/image_raw frame rate", 0.5, 120.0)
    camera_specs: str = setting("lite", "the vendor camera spec in use: the SDK socket's frame size and the "
                                "calibration of camera_info", choices=("lite", "wireless", "arducam", "older_rpi",
                                                                       "generic", "mujoco"))
    sdk_socket: bool = setting(True, "serve the vendor SDK's local camera socket (GStreamer unixfd protocol)")
    sdk_socket_path: str = setting("/tmp/reachymini_camera_socket", "path of the SDK camera socket",
                                   check=lambda v: None if v.startswith("/") else "must be an absolute path")
    sdk_fps: float = setting(15.0, "frame rate served on the SDK socket (the vendor daemon serves 10)", 1.0, 60.0)
    sdk_max_clients: int = setting(8, "SDK socket clients at once (more are refused, counted)", 1, 64)
    frame_id: str = setting("camera_optical_frame", "frame_id of the images (REP-103 optical frame of the URDF)")
    frame_prefix: str = setting("", "prefix of frame_id, for fleets (as motor_node's frame_prefix)",
                                check=frame_prefix_check)
    camera_info_url: str = setting("", "calibration YAML, path or file:// URL, scaled to width x height (default: "
                                   "the vendor's calibration of camera_specs)")
    pixel_format: str = setting("any", "V4L2 capture format", choices=PIXEL_FORMATS)
    encoding: str = setting("bgr8", "published encoding", choices=("bgr8", "rgb8"), runtime=True)
    compressed_fps: float = setting(5.0, "rate of camera/image_raw/compressed (0: off)", 0.0, 120.0, runtime=True)
    jpeg_quality: int = setting(80, "JPEG quality", 1, 100, runtime=True)
    stall_timeout_s: float = setting(1.0, "no frame for this long: device lost, reopen", 0.1, 60.0)
    idle_close_s: float = setting(5.0, "no reader (subscriber of the camera topics, SDK socket client) for this "
                                  "long: the device is closed until one comes (0: capture always)", 0.0, 3600.0,
                                  runtime=True)
    presence_probe_s: float = setting(3.0, "while closed for want of a reader: check this often that the device "
                                      "is still there (no capture)", 0.5, 60.0)

    @property
    def hardware_id(self) -> str:
        return "camera:synthetic" if self.simulated else "uvc:38fb:1002" if self.device == "auto" else self.device


def _audio_device(v: str) -> str | None:
    return "an ALSA PCM name must follow 'alsa:'" if v == "alsa:" else None


def _board(v: str) -> str | None:
    return None if v in ("auto", "usb", "off") or (v.startswith("sim:") and len(v) > 4) else \
        "must be 'auto', 'usb', 'off' or 'sim:<state file>'"


@dataclass
class AudioConfig(_Device, NodeConfig):
    use_sim: bool = setting(False, "synthetic tone instead of a capture device")
    device: str = setting("auto", "'auto' (the shared PCM capture_pcm when ~/.asoundrc defines the board's shared "
                          "PCMs, else the XVF3800 through PortAudio), 'alsa:<pcm>' (an ALSA PCM through arecord), "
                          "'sim' or a PortAudio/ALSA device name", check=_audio_device)
    sample_rate: int = setting(16000, "samples per second", 8000, 48000)
    channels: int = setting(1, "channels", 1, 8)
    chunk_ms: int = setting(100, "chunk length (ms)", 10, 1000)
    silence_warn_s: float = setting(5.0, "WARN after this long of digital silence", 0.1, 3600.0, runtime=True)
    clip_warn_fraction: float = setting(0.001, "WARN when this fraction of samples is at full scale", 0.0, 1.0,
                                        runtime=True)
    stall_timeout_s: float = setting(1.0, "no audio for this long: device lost, reopen", 0.1, 60.0)
    capture_pcm: str = setting("reachymini_audio_src", "shared capture PCM (dsnoop on the board; the SDK's name)")
    playback_pcm: str = setting("reachymini_audio_sink", "shared playback PCM for audio/out and audio/play_file "
                                "(dmix on the board; the SDK's name)")
    pcm_clock: bool = setting(True, "the capture PCM has a clock (a sound card); false for clockless PCMs "
                              "(file/null test PCMs): the node paces its reads")
    speaker_volume: int = setting(100, "speaker volume (%) of what audio_node plays (vendor /api/volume)", 0, 100,
                                  runtime=True)
    microphone_gain: int = setting(100, "microphone gain (%) applied to audio_node's capture (vendor "
                                   "/api/volume/microphone)", 0, 100, runtime=True)
    board: str = setting("auto", "direction-of-arrival board: 'usb' (XVF3800 38fb:1001 over pyusb), 'off', "
                         "'sim:<state file>' (simulated board); 'auto' = usb when device is 'auto', else off", check=_board)
    doa_rate_hz: float = setting(10.0, "rate of audio/direction and audio/speech (board reads)", 1.0, 50.0)
    frame_prefix: str = setting("", "prefix of the mic_array frame_id, for fleets (as motor_node's frame_prefix)",
                                check=frame_prefix_check)

    @property
    def frames_per_chunk(self) -> int:
        return self.sample_rate * self.chunk_ms // 1000

    @property
    def chunk_rate_hz(self) -> float:
        return 1000.0 / self.chunk_ms

    @property
    def hardware_id(self) -> str:
        return "audio:synthetic" if self.simulated else "usb:38fb:1001" if self.device == "auto" \
            else f"alsa:{self.device.removeprefix('alsa:')}"

    @property
    def board_mode(self) -> str:
        """'auto': the board over USB when capturing from the board (device 'auto'), else off."""
        return ("usb" if self.device == "auto" and not self.simulated else "off") if self.board == "auto" \
            else self.board
