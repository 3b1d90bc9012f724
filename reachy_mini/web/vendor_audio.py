"""The vendor daemon's (reachy-mini 1.13.0) audio routes, `/api/volume/*` and
`/api/media/*`, mapped onto audio_node and camera_node. No rclpy: the node
passes a `MediaActions` whose callables talk to ROS (nodes/web_bridge.py).

- /api/volume/current, /set, /microphone/current, /microphone/set, /test-sound:
  audio_node's `speaker_volume` / `microphone_gain` parameters (0-100), the
  vendor's VolumeResponse {volume, platform, device}.
- /api/media/status, /release, /acquire: audio_node's `audio/release` and
  camera_node's `camera/release` (std_srvs/SetBool); a failure names the
  device that refused (503).
- /api/media/play_sound, /stop_sound, /clear_incoming_audio: `audio/play_file`
  and `audio/stop`; a file is an absolute path or a name in the vendor's
  upload directory /tmp/reachy_mini_sounds.
- The other /api/media routes (uploads, wobbling, tracking) answer 501 with
  the reason. Access rules (loopback, rate limits) are applied by path by
  the app's vendor-API guard, not here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

SOUNDS_TMP_DIR = "/tmp/reachy_mini_sounds"   # the vendor's upload directory


@dataclass
class MediaActions:
    """What the routes need from ROS; each raises TimeoutError when the node
    does not answer, returns (ok, message) for the services."""
    get_param: Callable[[str], int]                  # audio_node parameter
    set_param: Callable[[str, int], tuple[bool, str]]
    release_audio: Callable[[bool], tuple[bool, str]]
    release_camera: Callable[[bool], tuple[bool, str]]
    play_file: Callable[[str], None]                 # publishes audio/play_file
    stop_sound: Callable[[], tuple[bool, str]]       # audio/stop
    test_tone: Callable[[], None]                    # a short tone on audio/out
    audio_state: Callable[[], dict]                  # {"shared_pcm": bool, "released": bool} from diagnostics
    playback_device: str = "reachymini_audio_sink"
    capture_device: str = "reachymini_audio_src"


class VolumeRequest(BaseModel):
    volume: int = Field(..., ge=0, le=100, description="Volume level (0-100)")


class VolumeResponse(BaseModel):
    volume: int
    platform: str
    device: str


class PlaySoundRequest(BaseModel):
    file: str


def resolve_sound(name: str) -> tuple[str, str]:
    """(path, '') of a sound to play: an absolute path, or a file name in the
    vendor's upload directory; ('', reason) when it cannot be played."""
    path = name
    if not os.path.isabs(path):
        base = os.path.basename(path)
        if not base or base != path:
            return "", f"{name!r}: give an absolute path or a file name in {SOUNDS_TMP_DIR}"
        path = os.path.join(SOUNDS_TMP_DIR, base)
    if not os.path.isfile(path):
        return "", f"{path}: no such file"
    if not os.access(path, os.R_OK):
        return "", f"{path}: not readable"
    return path, ""


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)


NOT_SERVED = {
    "sounds": "sound uploads are not served: copy the file to the robot and give its path to play_sound "
              "(or publish it on audio/play_file)",
    "wobbling": "audio-reactive head wobbling is not implemented",
    "tracking": "daemon-side face tracking is not implemented",
}


def vendor_audio_routes(media: MediaActions | None) -> APIRouter:
    r = APIRouter(tags=["vendor API: audio"])

    def call(fn, *args):
        """fn's result, or a JSONResponse (503) when ROS did not answer."""
        if media is None:
            return _problem(503, "audio is not connected (web_bridge without ROS)")
        try:
            return fn(*args)
        except TimeoutError as e:
            return _problem(503, str(e))

    def volume(param: str, device: str):
        v = call(media.get_param, param) if media else call(None)
        if isinstance(v, JSONResponse):
            return v
        return VolumeResponse(volume=int(v), platform="linux", device=device)

    def set_volume(param: str, value: int, device: str):
        res = call(media.set_param, param, value) if media else call(None)
        if isinstance(res, JSONResponse):
            return res
        ok, msg = res
        if not ok:
            return _problem(500, f"audio_node refused {param}={value}: {msg}")
        return VolumeResponse(volume=value, platform="linux", device=device)

    @r.get("/api/volume/current", response_model=VolumeResponse)
    def get_volume():
        """Speaker volume (audio_node's speaker_volume, 0-100)."""
        return volume("speaker_volume", media.playback_device if media else "")

    @r.post("/api/volume/set", response_model=VolumeResponse)
    def set_speaker(req: VolumeRequest):
        """Set the speaker volume, then play a short test tone (as the vendor does)."""
        out = set_volume("speaker_volume", req.volume, media.playback_device if media else "")
        if isinstance(out, VolumeResponse):
            call(media.test_tone)   # best effort, as the vendor's: the volume is set either way
        return out

    @r.post("/api/volume/test-sound")
    def test_sound():
        """Play a short test tone on the speaker."""
        res = call(media.test_tone) if media else call(None)
        if isinstance(res, JSONResponse):
            return res
        return {"status": "ok", "message": "Test sound played"}

    @r.get("/api/volume/microphone/current", response_model=VolumeResponse)
    def get_mic():
        """Microphone gain (audio_node's microphone_gain, 0-100)."""
        return volume("microphone_gain", media.capture_device if media else "")

    @r.post("/api/volume/microphone/set", response_model=VolumeResponse)
    def set_mic(req: VolumeRequest):
        """Set the microphone gain."""
        return set_volume("microphone_gain", req.volume, media.capture_device if media else "")

    # ---- media
    @r.get("/api/media/status")
    def media_status():
        """available: audio_node captures through the shared PCM; released: given up for apps."""
        st = media.audio_state() if media else {}
        shared, released = bool(st.get("shared_pcm")), bool(st.get("released"))
        return {"available": shared and not released, "released": released, "no_media": not shared}

    def release(give_up: bool):
        if media is None:
            return _problem(503, "audio is not connected (web_bridge without ROS)")
        failed = {}
        for name, fn in (("audio", media.release_audio), ("camera", media.release_camera)):
            try:
                ok, msg = fn(give_up)
            except TimeoutError as e:
                ok, msg = False, str(e)
            if not ok:
                failed[name] = msg
        if failed:
            what = "release" if give_up else "acquire"
            return _problem(503, f"{what} failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items()))
        return {"status": "ok"}

    @r.post("/api/media/release")
    def release_media():
        """audio_node and camera_node give their devices up until /acquire."""
        return release(True)

    @r.post("/api/media/acquire")
    def acquire_media():
        """audio_node and camera_node take their devices again."""
        return release(False)

    @r.post("/api/media/play_sound")
    def play_sound(body: PlaySoundRequest):
        """Play a sound file (WAV/OGG/FLAC) on the robot's speaker: an absolute
        path, or a name in /tmp/reachy_mini_sounds."""
        path, err = resolve_sound(body.file)
        if err:
            return _problem(404 if "no such file" in err else 403 if "not readable" in err else 400, err)
        res = call(media.play_file, path) if media else call(None)
        return res if isinstance(res, JSONResponse) else {"status": "ok"}

    def stop():
        res = call(media.stop_sound) if media else call(None)
        if isinstance(res, JSONResponse):
            return res
        ok, msg = res
        return {"status": "ok"} if ok else _problem(500, msg)

    @r.post("/api/media/stop_sound")
    def stop_sound():
        """Stop the sound being played (drops audio_node's playback queue)."""
        return stop()

    @r.post("/api/media/clear_incoming_audio")
    def clear_incoming_audio():
        """Drop the audio queued for the speaker (barge-in)."""
        return stop()

    def not_served(what: str):
        return lambda: _problem(501, NOT_SERVED[what])

    for method, path, what in (("GET", "/api/media/sounds", "sounds"), ("POST", "/api/media/sounds/upload", "sounds"),
                               ("DELETE", "/api/media/sounds/{filename}", "sounds"),
                               ("POST", "/api/media/wobbling/enable", "wobbling"),
                               ("POST", "/api/media/wobbling/disable", "wobbling"),
                               ("POST", "/api/media/tracking/enable", "tracking"),
                               ("POST", "/api/media/tracking/disable", "tracking"),
                               ("GET", "/api/media/tracking/face", "tracking")):
        r.add_api_route(path, not_served(what), methods=[method], include_in_schema=False)

    return r
