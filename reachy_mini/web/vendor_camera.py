"""The vendor daemon's GET /api/camera/specs (reachy-mini 1.13.0,
daemon/app/routers/camera.py): the camera spec named by our SDK status'
camera_specs_name (camera_node's `camera_specs`, read from its diagnostic),
as the vendor answers it: name, available and default resolutions (with the
sensor crop factor), K at the full sensor size and D. As the vendor, an
unknown or empty name answers the Lite spec. Access rules: the vendor-route
rules of issue 29 apply by path (/api/camera)."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from reachy_mini.core.media.camera_specs import specs_json
from reachy_mini.web.state import StateStore, group_values


class ResolutionInfo(BaseModel):
    name: str
    width: int
    height: int
    fps: int
    crop_factor: float


class CameraSpecsResponse(BaseModel):
    name: str
    available_resolutions: list[ResolutionInfo]
    default_resolution: ResolutionInfo
    K: list[list[float]]
    D: list[float]


def camera_routes(store: StateStore) -> APIRouter:
    r = APIRouter(prefix="/api/camera", tags=["vendor"])

    @r.get("/specs", response_model=CameraSpecsResponse)
    async def camera_specs() -> dict:
        """The camera specifications (vendor's CameraSpecsResponse): the camera_node's
        `camera_specs` (lite unless configured otherwise)."""
        name = group_values(store.snapshot()["tree"], "Camera", "camera").get("camera_specs_name", "")
        return specs_json(name)

    return r
