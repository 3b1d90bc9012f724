"""The vendor's camera specifications (reachy-mini 1.13.0,
`reachy_mini/media/camera_constants.py`) and what we derive from them:

- the size an SDK app reads from the camera socket (the spec's default
  resolution: `lite` 1920x1080, the others 1280x720), named by the daemon
  status' `camera_specs_name`;
- the calibration (K, D) the vendor measured at the full sensor size
  (3840x2592) and scales per resolution with the sensor crop factor
  (`camera_utils.scale_intrinsics`), which we scale again to the size
  camera_node publishes on ROS, for `camera/camera_info`;
- the JSON of the vendor's GET /api/camera/specs.

Plain Python + numpy-free lists (no ROS, no numpy needed)."""
from __future__ import annotations

from dataclasses import dataclass

SOURCE = "reachy-mini 1.13.0 media/camera_constants.py"
CALIBRATION_SIZE = (3840, 2592)   # the vendor's K is calibrated at the full sensor size

# CameraResolution: name -> (width, height, fps, crop_factor)
RESOLUTIONS: dict[str, tuple[int, int, int, float]] = {
    "R1536x864at40fps": (1536, 864, 40, 1.0),
    "R1280x720at60fps": (1280, 720, 60, 1.0),
    "R1280x720at30fps": (1280, 720, 30, 1.0),
    "R1920x1080at30fps": (1920, 1080, 30, 1.115),
    "R1920x1080at60fps": (1920, 1080, 60, 1.115),
    "R2304x1296at30fps": (2304, 1296, 30, 1.0),
    "R1600x1200at30fps": (1600, 1200, 30, 1.0),
    "R3264x2448at30fps": (3264, 2448, 30, 1.115),
    "R3264x2448at10fps": (3264, 2448, 10, 1.115),
    "R3840x2592at30fps": (3840, 2592, 30, 1.0),
    "R3840x2592at10fps": (3840, 2592, 10, 1.0),
    "R3840x2160at30fps": (3840, 2160, 30, 1.109),
    "R3840x2160at10fps": (3840, 2160, 10, 1.109),
    "R3072x1728at10fps": (3072, 1728, 10, 1.0),
    "R4608x2592at10fps": (4608, 2592, 10, 1.0),
}

_LITE_K = [[2001.8076426486707, 0.0, 1905.876059826701],
           [0.0, 2003.0778885944105, 1328.3239717935594],
           [0.0, 0.0, 1.0]]
# OpenCV's 12-coefficient model: k1 k2 p1 p2 k3 k4 k5 k6 s1 s2 s3 s4 (rational polynomial + thin prism)
_LITE_D = [-1.4652320301298614, 0.6542714131667414, 0.012147809271745049, -0.002677286460143648,
           0.3035939941825349, -1.4300809080461876, 0.570024082887235, 0.3567299243352951,
           0.003057363348400015, 0.0003357614008682464, -0.009897126394310923, -0.002050919484589521]


@dataclass(frozen=True)
class CameraSpec:
    name: str
    available_resolutions: tuple[str, ...]
    default_resolution: str
    K: tuple[tuple[float, ...], ...]
    D: tuple[float, ...]
    vid: int = 0
    pid: int = 0

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) an SDK app reads: the default resolution's."""
        w, h, _, _ = RESOLUTIONS[self.default_resolution]
        return w, h


def _t(m):
    return tuple(tuple(r) for r in m)


SPECS: dict[str, CameraSpec] = {s.name: s for s in (
    CameraSpec("lite", ("R1920x1080at60fps", "R3840x2592at30fps", "R3840x2160at30fps", "R3264x2448at30fps"),
               "R1920x1080at60fps", _t(_LITE_K), tuple(_LITE_D), 0x38FB, 0x1002),
    CameraSpec("wireless", ("R1280x720at30fps", "R1920x1080at30fps", "R1280x720at60fps", "R3840x2592at10fps",
                            "R3840x2160at10fps", "R3264x2448at10fps", "R3072x1728at10fps"),
               "R1280x720at30fps", _t(_LITE_K), tuple(_LITE_D), 0x38FB, 0x1002),
    CameraSpec("arducam", ("R2304x1296at30fps", "R4608x2592at10fps", "R1920x1080at30fps", "R1600x1200at30fps",
                           "R1280x720at30fps"), "R1280x720at30fps",
               _t([[550.3564, 0.0, 638.0112], [0.0, 549.1653, 364.589], [0.0, 0.0, 1.0]]),
               (-0.0694, 0.1565, -0.0004, 0.0003, -0.0983), 0x0C45, 0x636D),
    CameraSpec("older_rpi", ("R1920x1080at60fps", "R3840x2592at30fps", "R3840x2160at30fps", "R3264x2448at30fps"),
               "R1920x1080at60fps", _t(_LITE_K), tuple(_LITE_D), 0x1BCF, 0x28C4),
    CameraSpec("generic", ("R1280x720at30fps", "R1920x1080at30fps"), "R1280x720at30fps",
               _t([[640.0, 0.0, 640.0], [0.0, 640.0, 360.0], [0.0, 0.0, 1.0]]), (0.0,) * 5),
    CameraSpec("mujoco", ("R1280x720at60fps",), "R1280x720at60fps",
               _t([[1280.0, 0.0, 640.0], [0.0, 720.0, 360.0], [0.0, 0.0, 1.0]]), (0.0,) * 5),
)}


def get_spec(name: str) -> CameraSpec:
    """The spec by name; unknown or empty -> lite (as the vendor's get_camera_specs_by_name)."""
    return SPECS.get(name) or SPECS["lite"]


def intrinsics(spec: CameraSpec, resolution: str | None = None) -> list[list[float]]:
    """K at a resolution of the spec, as the vendor's camera_base.set_resolution computes it
    (scale_intrinsics from the full sensor size with the crop factor). The "generic" and
    "mujoco" specs are already given at their size (the vendor does not rescale them)."""
    w, h, _, crop = RESOLUTIONS[resolution or spec.default_resolution]
    K = [list(r) for r in spec.K]
    if spec.name in ("generic", "mujoco"):
        return K
    ow, oh = CALIBRATION_SIZE
    K[0][0] *= w / ow * crop
    K[1][1] *= h / oh * crop
    K[0][2] = K[0][2] / ow * w
    K[1][2] = K[1][2] / oh * h
    return K


def scale_k(K: list[list[float]], src: tuple[int, int], dst: tuple[int, int]) -> list[list[float]]:
    """K of an image resized from src=(w, h) to dst=(w, h) (pixel centres kept: c' = (c + .5) s - .5)."""
    sx, sy = dst[0] / src[0], dst[1] / src[1]
    return [[K[0][0] * sx, K[0][1] * sx, (K[0][2] + 0.5) * sx - 0.5],
            [0.0, K[1][1] * sy, (K[1][2] + 0.5) * sy - 0.5],
            [0.0, 0.0, 1.0]]


def camera_info(spec_name: str, published: tuple[int, int]) -> dict:
    """camera/camera_info for images captured at the spec's size and published at `published`:
    {width, height, distortion_model, d, k, r, p, source}."""
    spec = get_spec(spec_name)
    K = scale_k(intrinsics(spec), spec.size, published)
    D = list(spec.D)
    model = "plumb_bob" if len(D) == 5 else "rational_polynomial"
    k = [v for row in K for v in row]
    p = [K[0][0], K[0][1], K[0][2], 0.0, 0.0, K[1][1], K[1][2], 0.0, 0.0, 0.0, 1.0, 0.0]
    return {"width": published[0], "height": published[1], "distortion_model": model, "d": D, "k": k,
            "r": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0], "p": p,
            "source": f"{SOURCE} {spec.name} ({spec.default_resolution}, scaled to {published[0]}x{published[1]})"}


def scale_info(info: dict, published: tuple[int, int], source: str) -> dict:
    """A calibration file's camera_info (core/media/camera.load_camera_info) scaled to `published`."""
    src = (info["width"], info["height"])
    k = info["k"]
    K = scale_k([k[0:3], k[3:6], k[6:9]], src, published)
    p = list(info["p"])
    P = scale_k([p[0:3], p[4:7], [0.0, 0.0, 1.0]], src, published)
    sx = published[0] / src[0]
    out = dict(info, width=published[0], height=published[1], k=[v for r in K for v in r],
               p=[P[0][0], P[0][1], P[0][2], p[3] * sx, 0.0, P[1][1], P[1][2], p[7] * published[1] / src[1],
                  0.0, 0.0, 1.0, p[11]])
    out["source"] = source if src == published else f"{source} (scaled from {src[0]}x{src[1]})"
    return out


def specs_json(name: str) -> dict:
    """The body of the vendor's GET /api/camera/specs for the spec `name`."""
    spec = get_spec(name)

    def res(r: str) -> dict:
        w, h, fps, crop = RESOLUTIONS[r]
        return {"name": r, "width": w, "height": h, "fps": fps, "crop_factor": crop}
    return {"name": spec.name, "available_resolutions": [res(r) for r in spec.available_resolutions],
            "default_resolution": res(spec.default_resolution),
            "K": [list(r) for r in spec.K], "D": list(spec.D)}
