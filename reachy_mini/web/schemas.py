"""The JSON shapes of the web API (pydantic models, also the OpenAPI schema)."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from reachy_mini.core.levels import DESCRIPTION as LEVELS


class Status(BaseModel):
    name: str
    level: int = Field(ge=0, le=3, description=LEVELS)
    level_name: str
    message: str
    hardware_id: str = ""
    values: dict[str, str] = {}


class Health(BaseModel):
    level: int = Field(ge=0, le=3, description=LEVELS)
    level_name: str
    message: str
    healthy: bool
    robot: str = Field("", description="robot name (namespace, else host name)")
    age_s: Optional[float] = Field(None, description="seconds since the health node last published; None: never")
    groups: dict[str, str] = Field({}, description="level name of each top-level group, e.g. Motors: OK")
    uptime_s: float = Field(0.0, description="seconds since this web server started")


class StatusTree(BaseModel):
    top: Optional[Status]
    tree: list[Status]
    updated: float


class Motor(BaseModel):
    name: str
    level: int
    level_name: str
    message: str
    hardware_id: str = ""
    position_rad: Optional[float] = None
    goal_rad: Optional[float] = None
    temperature_c: Optional[float] = None
    voltage_v: Optional[float] = None
    current_ma: Optional[float] = None
    torque: Optional[str] = None
    hardware_error_status: Optional[str] = None
    hardware_errors: Optional[str] = None
    id: Optional[str] = None
    responding: Optional[str] = None
    communication_errors: Optional[str] = None


class Incident(BaseModel):
    id: int
    t: float
    name: str
    level: int
    level_name: str
    prev_level: Optional[int] = None
    prev_level_name: Optional[str] = None
    message: str
    hardware_id: str
    kind: str
    robot: str = Field("", description="the robot's name when the incident was recorded")
    snapshot: Optional[str] = Field(None, description="its flight-recorder file (GET /api/snapshots/{snapshot}); "
                                                      "None: no snapshot")


class SnapshotPlot(BaseModel):
    item: str = Field(description="the item plotted: the incident's own, or for a group's or the top level's "
                                  "incident the leaf item that caused it")
    incident_item: str = Field(description="the incident's item, as asked")
    key: Optional[str] = Field(None, description="the value plotted: the one that explains the alarm")
    start: Optional[float] = Field(None, description="first recorded message, epoch s")
    end: Optional[float] = Field(None, description="last recorded message, epoch s")
    value: list[list[float]] = Field(description="[t, value] of `key`")
    level: list[list[float]] = Field(description="[t, level] of the item")
    top_level: list[list[float]] = Field(description="[t, level] of the robot (top level)")


class Frame(BaseModel):
    p: list[float] = Field(description="position in the root frame (m)", min_length=3, max_length=3)
    r: list[float] = Field(description="rotation matrix in the root frame, row-major", min_length=9, max_length=9)


class Line(BaseModel):
    link: str
    pts: list[list[float]] = Field(description="a polyline in the root frame (m), drawing a visual shape of link")


class Frames(BaseModel):
    root: str = Field(description="base_link, with the robot's frame_prefix")
    prefix: str = Field(description="the robot's frame_prefix, taken off the frame names below")
    frames: dict[str, Frame]
    lines: list[Line] = Field(description="the URDF's shapes where TF puts them (empty before robot_description)")
    stamp: float = Field(description="epoch seconds of the latest transform received")


class HistoryPoint(BaseModel):
    t: float
    temperature_c: dict[str, float]
    loop_rate_hz: Optional[float] = None


class SystemInfo(BaseModel):
    package: str
    version: str
    python: str
    ros_distro: str
    libraries: dict[str, str]
    config: dict[str, Any]
    writes_enabled: bool
    uptime_s: float
    started_at: float


class TorqueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: StrictBool = Field(description="true: torque on for all motors; false: torque off")


class RebootRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SnapshotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WriteResult(BaseModel):
    success: bool
    message: str


class Problem(BaseModel):
    detail: str

