//! PyO3 bindings: `reachy_mini._driver`. Every blocking call releases the
//! GIL; every error becomes an exception carrying `motor_id` and `cause`.

use crate::bus::Bus;
use crate::control::trajectory::{Interpolation, Trajectory, Waypoint};
use crate::control::{
    Clamped, Controller as RsController, JointLimit, LimitPolicy, LiveConfig, LoopConfig, MotorState, TimeoutAction,
};
use crate::error::DxlError;
use crate::protocol;
use crate::transport::SerialTransport;
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use std::sync::Mutex;
use std::time::Duration;

create_exception!(_driver, DynamixelError, PyException, "Base class of every driver error.");
create_exception!(_driver, PortError, DynamixelError, "The serial port cannot be opened or has gone away.");
create_exception!(_driver, CommTimeout, DynamixelError, "A motor did not answer in time.");
create_exception!(_driver, CrcError, DynamixelError, "A status packet had a bad CRC.");
create_exception!(_driver, StatusError, DynamixelError, "A motor answered with an error number.");
create_exception!(_driver, MalformedPacket, DynamixelError, "A status packet was not what was asked for.");
create_exception!(_driver, NotRunning, DynamixelError, "The control loop is not running.");

fn to_py(e: DxlError) -> PyErr {
    let msg = e.to_string();
    let err = match &e {
        DxlError::Open { .. } | DxlError::Disconnected { .. } => PortError::new_err(msg),
        DxlError::Timeout { .. } => CommTimeout::new_err(msg),
        DxlError::Crc { .. } => CrcError::new_err(msg),
        DxlError::Status { .. } => StatusError::new_err(msg),
        DxlError::Malformed { .. } => MalformedPacket::new_err(msg),
        DxlError::InvalidArgument(_) | DxlError::OutOfLimits { .. } => pyo3::exceptions::PyValueError::new_err(msg),
        DxlError::NotRunning(_) => NotRunning::new_err(msg),
    };
    Python::attach(|py| {
        let v = err.value(py);
        let _ = v.setattr("motor_id", e.motor_id());
        let _ = v.setattr("cause", e.cause());
        if let DxlError::Status { code, .. } = &e {
            let _ = v.setattr("code", *code);
        }
    });
    err
}

fn motor_dict<'py>(py: Python<'py>, m: &MotorState) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("id", m.id)?;
    d.set_item("responding", m.responding)?;
    d.set_item("model", m.model)?;
    d.set_item("position", m.position)?;
    d.set_item("position_stamp", m.position_stamp)?;
    d.set_item("current", m.current)?;
    d.set_item("voltage", m.voltage)?;
    d.set_item("temperature", m.temperature)?;
    d.set_item("torque_enabled", m.torque_enabled)?;
    d.set_item("hardware_error", m.hardware_error)?;
    d.set_item("hardware_error_names", protocol::decode_hardware_error(m.hardware_error))?;
    d.set_item("alert", m.alert)?;
    d.set_item("status_stamp", m.status_stamp)?;
    d.set_item("goal", m.goal)?;
    d.set_item("eeprom_min", m.eeprom_min)?;
    d.set_item("eeprom_max", m.eeprom_max)?;
    d.set_item("limit_clamps", m.limit_clamps)?;
    d.set_item("comm_errors", m.comm_errors)?;
    d.set_item("timeouts", m.timeouts)?;
    d.set_item("crc_errors", m.crc_errors)?;
    d.set_item("consecutive_failures", m.consecutive_failures)?;
    d.set_item("last_error", m.last_error.clone())?;
    Ok(d)
}

/// The background control loop.
#[pyclass(module = "reachy_mini._driver")]
struct Controller {
    inner: RsController,
}

fn parse_action(name: &str) -> PyResult<TimeoutAction> {
    match name {
        "hold" => Ok(TimeoutAction::Hold),
        "torque_off" => Ok(TimeoutAction::TorqueOff),
        other => Err(pyo3::exceptions::PyValueError::new_err(format!(
            "timeout_action must be 'hold' or 'torque_off', not {other:?}"
        ))),
    }
}

fn action_name(a: TimeoutAction) -> &'static str {
    match a {
        TimeoutAction::Hold => "hold",
        TimeoutAction::TorqueOff => "torque_off",
    }
}

#[pymethods]
impl Controller {
    #[new]
    #[pyo3(signature = (port, ids, baudrate=1_000_000, loop_rate_hz=100.0, status_rate_hz=2.0,
                        io_timeout_ms=5.0, absent_after=3, reconnect_min_s=0.1, reconnect_max_s=2.0,
                        command_timeout_s=0.0, timeout_action="hold", realtime_priority=0, lock_memory=false,
                        limits=vec![], limit_policy="clamp"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        port: String,
        ids: Vec<u8>,
        baudrate: u32,
        loop_rate_hz: f64,
        status_rate_hz: f64,
        io_timeout_ms: f64,
        absent_after: u32,
        reconnect_min_s: f64,
        reconnect_max_s: f64,
        command_timeout_s: f64,
        timeout_action: &str,
        realtime_priority: i32,
        lock_memory: bool,
        limits: Vec<(u8, i32, i32, f64)>,
        limit_policy: &str,
    ) -> PyResult<Self> {
        let action = parse_action(timeout_action)?;
        let limit_policy = LimitPolicy::parse(limit_policy).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "limit_policy must be 'clamp' or 'reject', not {limit_policy:?}"
            ))
        })?;
        let limits = limits
            .into_iter()
            .map(|(id, min, max, max_velocity)| JointLimit { id, min, max, max_velocity })
            .collect();
        let secs = |name: &str, v: f64| -> PyResult<Duration> {
            Duration::try_from_secs_f64(v)
                .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("{name} must be a finite value >= 0, got {v}")))
        };
        let cfg = LoopConfig {
            port,
            baudrate,
            ids,
            loop_rate_hz,
            status_rate_hz,
            io_timeout: secs("io_timeout_ms", io_timeout_ms / 1000.0)?,
            absent_after: absent_after.max(1),
            reconnect_min: secs("reconnect_min_s", reconnect_min_s)?,
            reconnect_max: secs("reconnect_max_s", reconnect_max_s)?,
            command_timeout: secs("command_timeout_s", command_timeout_s)?,
            timeout_action: action,
            realtime_priority,
            lock_memory,
            limits,
            limit_policy,
        };
        Ok(Self { inner: RsController::new(cfg).map_err(to_py)? })
    }

    /// Opens the port, pings every motor, starts the loop. Returns missing ids.
    fn start(&self, py: Python<'_>) -> PyResult<Vec<u16>> {
        let missing = py.detach(|| self.inner.start()).map_err(to_py)?;
        Ok(missing.into_iter().map(u16::from).collect())
    }

    /// Stops the loop thread (idempotent). Torque is left as it is.
    fn stop(&self, py: Python<'_>) {
        py.detach(|| self.inner.stop())
    }

    /// True while the loop thread runs.
    fn is_running(&self) -> bool {
        self.inner.is_running()
    }

    /// Changes loop rate, status rate and the goal watchdog while running.
    /// Omitted arguments keep their value. Returns the configuration in force
    /// as a dict.
    #[pyo3(signature = (loop_rate_hz=None, status_rate_hz=None, command_timeout_s=None, timeout_action=None))]
    fn configure<'py>(
        &self,
        py: Python<'py>,
        loop_rate_hz: Option<f64>,
        status_rate_hz: Option<f64>,
        command_timeout_s: Option<f64>,
        timeout_action: Option<&str>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let mut live: LiveConfig = self.inner.live_config();
        if let Some(v) = loop_rate_hz {
            live.loop_rate_hz = v;
        }
        if let Some(v) = status_rate_hz {
            live.status_rate_hz = v;
        }
        if let Some(v) = command_timeout_s {
            live.command_timeout = Duration::try_from_secs_f64(v).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("command_timeout_s must be a finite value >= 0, got {v}"))
            })?;
        }
        if let Some(a) = timeout_action {
            live.timeout_action = parse_action(a)?;
        }
        self.inner.configure(live).map_err(to_py)?;
        let now = self.inner.live_config();
        let d = PyDict::new(py);
        d.set_item("loop_rate_hz", now.loop_rate_hz)?;
        d.set_item("status_rate_hz", now.status_rate_hz)?;
        d.set_item("command_timeout_s", now.command_timeout.as_secs_f64())?;
        d.set_item("timeout_action", action_name(now.timeout_action))?;
        Ok(d)
    }

    /// List of per-motor dicts (raw units), in configured order.
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let motors = py.detach(|| self.inner.snapshot());
        let list = PyList::empty(py);
        for m in &motors {
            list.append(motor_dict(py, m)?)?;
        }
        Ok(list)
    }

    /// Loop statistics: rates, cycle and jitter percentiles (us), counters,
    /// `sample_seq`, last error.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = py.detach(|| self.inner.stats());
        let d = PyDict::new(py);
        d.set_item("port", s.port)?;
        d.set_item("baudrate", s.baudrate)?;
        d.set_item("connected", s.connected)?;
        d.set_item("cycles", s.cycles)?;
        d.set_item("achieved_rate_hz", s.achieved_rate_hz)?;
        d.set_item("cycle_p50_us", s.cycle_p50_us)?;
        d.set_item("cycle_p99_us", s.cycle_p99_us)?;
        d.set_item("cycle_max_us", s.cycle_max_us)?;
        d.set_item("jitter_p99_us", s.jitter_p99_us)?;
        d.set_item("jitter_max_us", s.jitter_max_us)?;
        d.set_item("timeouts", s.timeouts)?;
        d.set_item("crc_errors", s.crc_errors)?;
        d.set_item("status_errors", s.status_errors)?;
        d.set_item("garbage_bytes", s.garbage_bytes)?;
        d.set_item("stray_replies", s.stray_replies)?;
        d.set_item("write_errors", s.write_errors)?;
        d.set_item("goals_merged", s.goals_merged)?;
        d.set_item("goals_immediate", s.goals_immediate)?;
        d.set_item("trajectories_done", s.trajectories_done)?;
        d.set_item("goals_clamped", s.goals_clamped)?;
        d.set_item("limit_refusals", s.limit_refusals)?;
        d.set_item("reconnects", s.reconnects)?;
        d.set_item("disconnects", s.disconnects)?;
        d.set_item("events_dropped", s.events_dropped)?;
        d.set_item("sample_seq", s.sample_seq)?;
        d.set_item("realtime", s.realtime)?;
        d.set_item("last_error", s.last_error)?;
        d.set_item("last_error_stamp", s.last_error_stamp)?;
        Ok(d)
    }

    /// Blocks (GIL released) until a driver sample newer than `after_seq`
    /// exists: one per completed position read. Returns (seq, stamp_unix) of
    /// the latest sample, or None after `timeout_s`. Start with after_seq=0.
    #[pyo3(signature = (after_seq, timeout_s))]
    fn wait_sample(&self, py: Python<'_>, after_seq: u64, timeout_s: f64) -> PyResult<Option<(u64, f64)>> {
        let timeout = Duration::try_from_secs_f64(timeout_s).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err(format!("timeout_s must be a finite value >= 0, got {timeout_s}"))
        })?;
        Ok(py.detach(|| self.inner.wait_sample(after_seq, timeout)))
    }

    /// The samples newer than `after_seq` still kept (the last 256), oldest
    /// first, without waiting: list of (seq, stamp_unix, [raw position or
    /// None per motor, in configured order]). A gap in seq is samples lost.
    #[allow(clippy::type_complexity)]
    fn samples_after(&self, py: Python<'_>, after_seq: u64) -> Vec<(u64, f64, Vec<Option<i32>>)> {
        py.detach(|| self.inner.samples_after(after_seq))
            .into_iter()
            .map(|s| (s.seq, s.stamp, s.positions))
            .collect()
    }

    /// Clears the cycle/jitter percentile windows.
    fn reset_timing(&self) {
        self.inner.reset_timing()
    }

    /// Events since the last call: list of (stamp, kind, motor_id, message).
    fn drain_events(&self) -> Vec<(f64, String, Option<u8>, String)> {
        self.inner
            .drain_events()
            .into_iter()
            .map(|e| (e.stamp, e.kind.as_str().to_string(), e.motor_id, e.message))
            .collect()
    }

    /// Queues raw goal positions [(id, raw)]; written by the next cycle,
    /// within each joint's range and maximum velocity. Returns the goals
    /// clamped into their range [(id, requested, applied)]; with the reject
    /// policy a goal beyond its range raises ValueError (motor_id set) and
    /// nothing of the command is executed.
    fn set_goals(&self, goals: Vec<(u8, i32)>) -> PyResult<Vec<Clamped>> {
        self.inner.set_goals(&goals).map_err(to_py)
    }

    /// The joint limits in force: ([(id, min, max, max_velocity ticks/s)], policy).
    fn limits(&self) -> (Vec<(u8, i32, i32, f64)>, String) {
        let env = self.inner.envelope();
        let mut ids: Vec<u8> = env.ids().copied().collect();
        ids.sort_unstable();
        let out = ids
            .into_iter()
            .filter_map(|id| env.get(id).map(|l| (l.id, l.min, l.max, l.max_velocity)))
            .collect();
        (out, env.policy.as_str().to_string())
    }

    /// Executes waypoints [(seconds from now, [(id, raw)])] in the loop,
    /// interpolated ("linear" or "minjerk" per segment) at loop rate;
    /// preempts the running trajectory; streamed goals preempt it too.
    /// Waypoints are limited as in set_goals; returns the largest clamp per
    /// motor [(id, requested, applied)].
    #[pyo3(signature = (points, interpolation="minjerk"))]
    fn set_trajectory(&self, points: Vec<(f64, Vec<(u8, i32)>)>, interpolation: &str) -> PyResult<Vec<Clamped>> {
        let interpolation = Interpolation::parse(interpolation).ok_or_else(|| {
            pyo3::exceptions::PyValueError::new_err(format!(
                "interpolation must be 'linear' or 'minjerk', got {interpolation:?}"
            ))
        })?;
        let mut wp = Vec::with_capacity(points.len());
        for (t, goals) in points {
            let at = Duration::try_from_secs_f64(t).map_err(|_| {
                pyo3::exceptions::PyValueError::new_err(format!("waypoint time must be finite and >= 0, got {t}"))
            })?;
            wp.push(Waypoint { at, goals });
        }
        self.inner.set_trajectory(Trajectory { points: wp, interpolation }).map_err(to_py)
    }

    /// True while a trajectory is given or running.
    fn trajectory_active(&self) -> bool {
        self.inner.trajectory_active()
    }

    /// Torque on/off; returns [(id, error message or None)].
    fn set_torque(&self, py: Python<'_>, ids: Vec<u8>, enable: bool) -> PyResult<Vec<(u8, Option<String>)>> {
        let r = py.detach(|| self.inner.set_torque(&ids, enable)).map_err(to_py)?;
        Ok(r.into_iter().map(|(id, e)| (id, e.map(|e| e.to_string()))).collect())
    }

    /// Reboots a motor (clears a latched hardware error), between cycles.
    fn reboot(&self, py: Python<'_>, id: u8) -> PyResult<()> {
        py.detach(|| self.inner.reboot(id)).map_err(to_py)
    }

    /// Pings a motor between cycles; returns (model number, firmware version).
    fn ping(&self, py: Python<'_>, id: u8) -> PyResult<(u16, u8)> {
        py.detach(|| self.inner.ping(id)).map_err(to_py)
    }

    /// Reads `length` bytes of the control table at `address`, between cycles.
    fn read<'py>(&self, py: Python<'py>, id: u8, address: u16, length: u16) -> PyResult<Bound<'py, PyBytes>> {
        let d = py.detach(|| self.inner.read(id, address, length)).map_err(to_py)?;
        Ok(PyBytes::new(py, &d))
    }

    /// Writes `data` to the control table at `address`, between cycles.
    fn write(&self, py: Python<'_>, id: u8, address: u16, data: Vec<u8>) -> PyResult<()> {
        py.detach(|| self.inner.write(id, address, data)).map_err(to_py)
    }
}

/// Direct synchronous bus access (tools, tests). Not thread-safe to share
/// with a running Controller on the same port.
#[pyclass(name = "Bus", module = "reachy_mini._driver")]
struct Bus_ {
    bus: Mutex<Bus>,
}

#[pymethods]
impl Bus_ {
    #[new]
    #[pyo3(signature = (port, baudrate=1_000_000, io_timeout_ms=5.0))]
    fn new(py: Python<'_>, port: String, baudrate: u32, io_timeout_ms: f64) -> PyResult<Self> {
        let t = py.detach(|| SerialTransport::open(&port, baudrate)).map_err(to_py)?;
        let timeout = Duration::try_from_secs_f64(io_timeout_ms / 1000.0)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("io_timeout_ms must be >= 0"))?;
        Ok(Self { bus: Mutex::new(Bus::new(Box::new(t), baudrate, timeout)) })
    }

    /// Returns (model number, firmware version).
    fn ping(&self, py: Python<'_>, id: u8) -> PyResult<(u16, u8)> {
        py.detach(|| self.bus.lock().unwrap_or_else(|p| p.into_inner()).ping(id)).map_err(to_py)
    }

    /// Returns (data, alert).
    fn read<'py>(&self, py: Python<'py>, id: u8, address: u16, length: u16) -> PyResult<(Bound<'py, PyBytes>, bool)> {
        let (d, a) = py
            .detach(|| self.bus.lock().unwrap_or_else(|p| p.into_inner()).read(id, address, length))
            .map_err(to_py)?;
        Ok((PyBytes::new(py, &d), a))
    }

    /// Returns the alert flag of the acknowledgement.
    fn write(&self, py: Python<'_>, id: u8, address: u16, data: Vec<u8>) -> PyResult<bool> {
        py.detach(|| self.bus.lock().unwrap_or_else(|p| p.into_inner()).write(id, address, &data)).map_err(to_py)
    }

    /// Reboots a motor (clears a latched hardware error).
    fn reboot(&self, py: Python<'_>, id: u8) -> PyResult<()> {
        py.detach(|| self.bus.lock().unwrap_or_else(|p| p.into_inner()).reboot(id)).map_err(to_py)
    }

    /// Sync write of `length` bytes at `address`: entries are (id, data).
    fn sync_write(&self, py: Python<'_>, address: u16, length: u16, entries: Vec<(u8, Vec<u8>)>) -> PyResult<()> {
        py.detach(|| {
            let e: Vec<(u8, &[u8])> = entries.iter().map(|(i, d)| (*i, d.as_slice())).collect();
            self.bus.lock().unwrap_or_else(|p| p.into_inner()).sync_write(address, length, &e)
        })
        .map_err(to_py)
    }

    /// Returns {id: bytes} for motors that answered, and raises nothing for
    /// the silent ones: they map to the exception instance instead.
    fn sync_read<'py>(&self, py: Python<'py>, ids: Vec<u8>, address: u16, length: u16) -> PyResult<Bound<'py, PyDict>> {
        let items = py
            .detach(|| self.bus.lock().unwrap_or_else(|p| p.into_inner()).sync_read(&ids, address, length))
            .map_err(to_py)?;
        let d = PyDict::new(py);
        for (id, r) in items {
            match r {
                Ok(p) => d.set_item(id, PyBytes::new(py, &p.params))?,
                Err(e) => d.set_item(id, to_py(e).into_value(py))?,
            }
        }
        Ok(d)
    }

    /// Bus counters: packets, timeouts, CRC/status errors, stray replies, bytes.
    fn counters<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let c = self.bus.lock().unwrap_or_else(|p| p.into_inner()).counters.clone();
        let d = PyDict::new(py);
        d.set_item("packets_ok", c.packets_ok)?;
        d.set_item("timeouts", c.timeouts)?;
        d.set_item("crc_errors", c.crc_errors)?;
        d.set_item("status_errors", c.status_errors)?;
        d.set_item("garbage_bytes", c.garbage_bytes)?;
        d.set_item("stray_replies", c.stray_replies)?;
        d.set_item("bytes_tx", c.bytes_tx)?;
        d.set_item("bytes_rx", c.bytes_rx)?;
        Ok(d)
    }
}

/// CRC-16 of the Dynamixel Protocol 2.0 (e-manual table).
#[pyfunction]
fn crc16(data: &[u8]) -> u16 {
    protocol::crc16(data)
}

/// Names of the bits set in a hardware_error_status byte.
#[pyfunction]
fn decode_hardware_error(status: u8) -> Vec<&'static str> {
    protocol::decode_hardware_error(status)
}

/// Dynamixel Protocol 2.0 driver for Reachy Mini, in Rust: the background
/// control loop (`Controller`), direct bus access (`Bus`) and typed errors.
#[pymodule]
fn _driver(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Controller>()?;
    m.add("Bus", py.get_type::<Bus_>())?;
    m.add("TRAJECTORY_MAX_POINTS", crate::control::trajectory::MAX_POINTS)?;
    m.add("TRAJECTORY_MAX_DURATION_S", crate::control::trajectory::MAX_DURATION.as_secs_f64())?;
    m.add_function(wrap_pyfunction!(crc16, m)?)?;
    m.add_function(wrap_pyfunction!(decode_hardware_error, m)?)?;
    m.add("DynamixelError", py.get_type::<DynamixelError>())?;
    m.add("PortError", py.get_type::<PortError>())?;
    m.add("CommTimeout", py.get_type::<CommTimeout>())?;
    m.add("CrcError", py.get_type::<CrcError>())?;
    m.add("StatusError", py.get_type::<StatusError>())?;
    m.add("MalformedPacket", py.get_type::<MalformedPacket>())?;
    m.add("NotRunning", py.get_type::<NotRunning>())?;
    Ok(())
}
