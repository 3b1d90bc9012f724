//! Typed driver errors. Every variant names the motor (when one is involved)
//! and the cause; the bindings map each variant to a Python exception class.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum DxlError {
    /// The port could not be opened.
    Open { port: String, cause: String },
    /// The port failed during I/O (unplugged adapter, closed pty...).
    Disconnected { port: String, cause: String },
    /// No (complete) status packet arrived before the deadline.
    Timeout { id: u8, waited_us: u64 },
    /// A frame arrived but its CRC was wrong.
    Crc { id: u8 },
    /// The motor answered with a non-zero error number in its status packet.
    Status { id: u8, code: u8 },
    /// A status packet was well formed but not what was asked for.
    Malformed { id: u8, reason: String },
    /// Bad arguments from the caller.
    InvalidArgument(String),
    /// A goal beyond its joint's range, refused (limit policy `reject`);
    /// `waypoint` is its index in a trajectory.
    OutOfLimits { id: u8, goal: i32, min: i32, max: i32, waypoint: Option<usize> },
    /// The control loop is not running or did not answer.
    NotRunning(String),
}

pub type Result<T> = std::result::Result<T, DxlError>;

impl DxlError {
    /// The motor id concerned, if any.
    pub fn motor_id(&self) -> Option<u8> {
        match self {
            DxlError::Timeout { id, .. }
            | DxlError::Crc { id }
            | DxlError::Status { id, .. }
            | DxlError::Malformed { id, .. }
            | DxlError::OutOfLimits { id, .. } => Some(*id),
            _ => None,
        }
    }

    /// A short machine-readable cause.
    pub fn cause(&self) -> String {
        match self {
            DxlError::Open { .. } => "open_failed".into(),
            DxlError::Disconnected { .. } => "disconnected".into(),
            DxlError::Timeout { .. } => "timeout".into(),
            DxlError::Crc { .. } => "crc_error".into(),
            DxlError::Status { code, .. } => crate::protocol::error_code_name(*code).into(),
            DxlError::Malformed { .. } => "malformed_status".into(),
            DxlError::InvalidArgument(_) => "invalid_argument".into(),
            DxlError::OutOfLimits { .. } => "out_of_limits".into(),
            DxlError::NotRunning(_) => "not_running".into(),
        }
    }

    /// True for errors after which the port must be reopened.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, DxlError::Disconnected { .. } | DxlError::Open { .. })
    }
}

impl fmt::Display for DxlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DxlError::Open { port, cause } => write!(f, "cannot open serial port {port}: {cause}"),
            DxlError::Disconnected { port, cause } => write!(f, "serial port {port} disconnected: {cause}"),
            DxlError::Timeout { id, waited_us } => {
                write!(f, "motor {id}: no status packet within {:.1} ms", *waited_us as f64 / 1000.0)
            }
            DxlError::Crc { id } => write!(f, "motor {id}: status packet CRC mismatch"),
            DxlError::Status { id, code } => write!(
                f,
                "motor {id}: status error {code} ({})",
                crate::protocol::error_code_name(*code)
            ),
            DxlError::Malformed { id, reason } => write!(f, "motor {id}: malformed status packet: {reason}"),
            DxlError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            DxlError::OutOfLimits { id, goal, min, max, waypoint } => {
                if let Some(i) = waypoint {
                    write!(f, "waypoint {i}: ")?;
                }
                write!(f, "motor {id}: goal {goal} is outside its joint limits [{min}, {max}] (limit_policy reject)")
            }
            DxlError::NotRunning(m) => write!(f, "control loop not running: {m}"),
        }
    }
}

impl std::error::Error for DxlError {}
