//! Real-time scheduling of the control thread: SCHED_FIFO at a chosen
//! priority and, optionally, locked memory. Whether the system granted it is
//! reported (stats `realtime`), never fatal: without CAP_SYS_NICE or an
//! RLIMIT_RTPRIO (systemd `LimitRTPRIO`) the loop runs on the normal scheduler.

/// Applies the policy to the calling thread; returns what was granted.
pub fn apply(priority: i32, lock_memory: bool) -> String {
    let mut parts = vec![];
    if priority <= 0 {
        parts.push("off (normal scheduler)".to_string());
    } else {
        let param = libc::sched_param { sched_priority: priority };
        // SAFETY: pthread_self() is the calling thread; param outlives the call.
        let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        parts.push(if rc == 0 {
            format!("SCHED_FIFO {priority} granted")
        } else {
            format!("SCHED_FIFO {priority} refused ({}): normal scheduler", std::io::Error::from_raw_os_error(rc))
        });
    }
    if lock_memory {
        // SAFETY: mlockall takes flags only.
        let rc = unsafe { libc::mlockall(libc::MCL_CURRENT | libc::MCL_FUTURE) };
        parts.push(if rc == 0 {
            "memory locked".to_string()
        } else {
            format!("memory lock refused ({})", std::io::Error::last_os_error())
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::apply;

    #[test]
    fn off_is_reported_and_a_refusal_is_not_fatal() {
        assert_eq!(apply(0, false), "off (normal scheduler)");
        // Granted (root / CAP_SYS_NICE) or refused: either way a clear report, no panic.
        let r = std::thread::spawn(|| apply(1, false)).join().expect("no panic");
        assert!(r == "SCHED_FIFO 1 granted" || r.starts_with("SCHED_FIFO 1 refused"), "{r}");
    }
}
