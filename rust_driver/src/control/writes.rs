//! The loop's bus writes that outlive one cycle: goals (re-queued when the
//! write fails; new ones written between any two transactions) and torque
//! (goal := present position first, no jump).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{limits, lock, trajectory, EventKind, Reply, Shared};
use crate::bus::Bus;
use crate::error::{DxlError, Result};
use crate::registers::xl330;

pub(super) fn write_goals(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, goals: &[(u8, i32)]) -> Result<()> {
    let reg = xl330::GOAL_POSITION;
    let data: Vec<(u8, Vec<u8>)> = goals.iter().map(|&(id, v)| (id, reg.encode(v))).collect();
    let entries: Vec<(u8, &[u8])> = data.iter().map(|(id, d)| (*id, &d[..])).collect();
    match bus.sync_write(reg.address, reg.length, &entries) {
        Ok(()) => {
            let mut s = lock(shared);
            for &(id, v) in goals {
                if let Some(m) = s.motor(id) {
                    m.goal = Some(v);
                }
            }
            Ok(())
        }
        Err(e) => {
            let mut s = lock(shared);
            s.stats.write_errors += 1;
            // Not dropped: goals go back in the queue unless newer ones arrived.
            s.requeue(goals);
            let msg = format!("goal sync write for {} motors failed: {e}", goals.len());
            s.event(EventKind::WriteError, None, msg);
            Err(e)
        }
    }
}

/// What a wake (Command::Goals) asks for: clears the wake flag, starts a
/// given trajectory (or samples the running one) and drains the goal queue
/// through the joint limits and the velocity limit.
pub(super) fn take_woken_goals(s: &mut Shared) -> Vec<(u8, i32)> {
    s.goals_wake_sent = false;
    take_goals(s, Instant::now())
}

/// The goals due at `now`: the running trajectory's sample and the queued
/// goals, clamped into the joint ranges and limited in velocity.
pub(super) fn take_goals(s: &mut Shared, now: Instant) -> Vec<(u8, i32)> {
    trajectory::advance(s, now);
    let goals: Vec<(u8, i32)> = s.pending_goals.drain().collect();
    let cap = s.slew_cap;
    limits::shape(s, goals, now, cap)
}

/// Goals that hold the present positions (torque on, the watchdog's hold):
/// no motion, so written as they are, except that a motor beyond its range
/// (moved by hand, limits changed) is then brought back into it at its
/// maximum velocity. Ends the motion of the motors in `hold`.
pub(super) fn hold_goals(s: &mut Shared, hold: &[(u8, i32)]) {
    for &(id, p) in hold {
        s.pending_goals.remove(&id);
        s.slewing.remove(&id);
        let c = s.envelope.clamp(id, p);
        if c != p {
            s.slewing.insert(id, c);
        }
    }
}

/// Called between two transactions of a cycle: goals given meanwhile (a
/// wake is pending) are written at once, so a goal waits for the
/// transaction in progress, not for the end of the cycle. The latest goal
/// per motor wins (merged in `set_goals`). Goals re-queued by a failed write
/// (no wake) wait for the next cycle. Only a lost link ends the cycle; any
/// other failure is re-queued and reported by [`write_goals`].
pub(super) fn write_woken_goals(bus: &mut Bus, shared: &Arc<Mutex<Shared>>) -> Result<()> {
    let goals = {
        let mut s = lock(shared);
        if !s.goals_wake_sent {
            return Ok(());
        }
        take_woken_goals(&mut s)
    };
    if goals.is_empty() {
        return Ok(());
    }
    match write_goals(bus, shared, &goals) {
        Ok(()) => {
            lock(shared).stats.goals_immediate += goals.len() as u64;
            Ok(())
        }
        Err(e) if e.is_disconnect() => Err(e),
        Err(_) => Ok(()),
    }
}

pub(super) fn torque(bus: &mut Bus, shared: &Arc<Mutex<Shared>>, ids: &[u8], enable: bool) -> Result<Reply> {
    if enable {
        // Avoid a jump: goal = present position before torque comes on.
        let hold: Vec<(u8, i32)> = {
            let mut s = lock(shared);
            let hold: Vec<(u8, i32)> = s
                .motors
                .iter()
                .filter(|m| ids.contains(&m.id))
                .filter_map(|m| m.position.map(|p| (m.id, p)))
                .collect();
            hold_goals(&mut s, &hold);
            hold
        };
        write_goals(bus, shared, &hold)?;
    }
    let reg = xl330::TORQUE_ENABLE;
    let mut out = vec![];
    for &id in ids {
        // Writing torque is idempotent: a reply lost once (a late status on a
        // saturated bus) gets one more try before the command fails.
        let r = match bus.write(id, reg.address, &reg.encode(enable)) {
            Err(DxlError::Timeout { .. }) => bus.write(id, reg.address, &reg.encode(enable)),
            r => r,
        };
        let mut s = lock(shared);
        match r {
            Ok(_) => {
                if let Some(m) = s.motor(id) {
                    m.torque_enabled = Some(enable);
                }
                out.push((id, None));
            }
            Err(e) => {
                s.stats.write_errors += 1;
                let msg = format!("motor {id}: torque {} failed: {e}", if enable { "on" } else { "off" });
                s.event(EventKind::WriteError, Some(id), msg);
                if e.is_disconnect() {
                    return Err(e);
                }
                out.push((id, Some(e)));
            }
        }
    }
    if !enable {
        // Torque off (or an e-stop) ends the motion: no goal, and no
        // trajectory that would jump the motors when torque comes back.
        let mut s = lock(shared);
        s.pending_goals.retain(|id, _| !ids.contains(id));
        s.slewing.retain(|id, _| !ids.contains(id));
        s.trajectory = None;
        s.pending_trajectory = None;
    }
    Ok(Reply::PerMotor(out))
}
