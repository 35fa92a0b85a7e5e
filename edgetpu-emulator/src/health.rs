//! What has happened to each emulated device in this process: how many invokes it has
//! run, and whether it has vanished (`vanish-after`) and come back (`back-after`).
//!
//! The state is per process and kept by device name (`usb:0`), so it survives a device
//! being closed and opened again, and is the same whichever delegate invokes it. A device
//! has lives: it vanishes at the end of one, and comes back as a new one, whose invokes
//! count from 0 again; a delegate opened in an earlier life cannot invoke any more.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::devices::Device;

#[derive(Debug, Default)]
struct State {
    /// Invokes so far in this life.
    invokes: u64,
    /// Lives ended so far: the present life's number.
    life: u64,
    /// When the device vanished, while it is gone.
    vanished_at: Option<Instant>,
}

static STATES: Mutex<BTreeMap<String, State>> = Mutex::new(BTreeMap::new());

fn states() -> MutexGuard<'static, BTreeMap<String, State>> {
    // The state stays consistent through a panic elsewhere: every update is one assignment.
    STATES.lock().unwrap_or_else(|e| e.into_inner())
}

/// The state of `device`, brought up to date: a vanished device whose `back-after` has
/// passed is back, in a new life.
fn state<'a>(states: &'a mut BTreeMap<String, State>, device: &Device) -> &'a mut State {
    let state = states.entry(device.name()).or_default();
    if let (Some(at), Some(back)) = (state.vanished_at, device.behaviour.back_after)
        && at.elapsed() >= back
    {
        *state = State {
            invokes: 0,
            life: state.life + 1,
            vanished_at: None,
        };
    }
    state
}

/// The life `device` is in, or why it cannot be opened: it has vanished.
pub fn life(device: &Device) -> Result<u64, String> {
    let mut states = states();
    let state = state(&mut states, device);
    match state.vanished_at {
        None => Ok(state.life),
        Some(at) => Err(gone(device, at)),
    }
}

/// Whether `device` is there (listed): it has not vanished, or is back.
pub fn present(device: &Device) -> bool {
    life(device).is_ok()
}

/// Counts an invoke of `device` by a delegate opened in `life`: its number in this life
/// (from 1), or why the device cannot run it (it has vanished, or vanished and come back
/// since the delegate opened it).
pub fn count_invoke(device: &Device, life: u64) -> Result<u64, String> {
    let mut states = states();
    let state = state(&mut states, device);
    if let Some(at) = state.vanished_at {
        return Err(gone(device, at));
    }
    if state.life != life {
        return Err(format!(
            "{device} disappeared and came back since this delegate opened it: open it again"
        ));
    }
    state.invokes += 1;
    Ok(state.invokes)
}

/// Marks `device` as gone from now on.
pub fn vanish(device: &Device) {
    state(&mut states(), device).vanished_at = Some(Instant::now());
}

fn gone(device: &Device, at: Instant) -> String {
    let after = device.behaviour.vanish_after.unwrap_or_default();
    let back = match device.behaviour.back_after {
        Some(back) => format!(
            "; it comes back {:.3} s after it went ({:.3} s ago)",
            back.as_secs_f64(),
            at.elapsed().as_secs_f64()
        ),
        None => String::new(),
    };
    format!("{device} has disappeared after {after} invokes and is no longer listed{back}")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::devices::parse;

    #[test]
    fn a_device_vanishes_and_comes_back_in_a_new_life() {
        // Names of their own, so that no other test of this process counts on them.
        let devices = parse("pci:7,pci:1@vanish-after=2@back-after=0.2").unwrap();
        let device = devices.last().unwrap();
        let life0 = life(device).unwrap();
        assert_eq!(count_invoke(device, life0), Ok(1));
        assert_eq!(count_invoke(device, life0), Ok(2));
        vanish(device);
        assert!(!present(device));
        let err = count_invoke(device, life0).unwrap_err();
        assert!(err.contains("has disappeared after 2 invokes"), "{err}");
        assert!(life(device).is_err());
        std::thread::sleep(Duration::from_millis(250));
        let life1 = life(device).unwrap();
        assert_eq!(life1, life0 + 1);
        let err = count_invoke(device, life0).unwrap_err();
        assert!(
            err.contains("came back since this delegate opened it"),
            "{err}"
        );
        assert_eq!(count_invoke(device, life1), Ok(1));
    }
}
