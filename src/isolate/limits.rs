//! Resource limits of an isolated child, set between `fork` and `exec`.
//!
//! The one `unsafe` outside [`crate::backend`]: `CommandExt::pre_exec` is unsafe because its
//! closure runs in the forked child, where only async-signal-safe calls are allowed. Besides
//! the limits, it hands a worker its shared memory as a descriptor of its own.
#![allow(unsafe_code)]

use std::process::Command;

/// Makes `command`'s process start with no core dumps and, when `memory_limit` is given, at
/// most that many bytes of address space (`RLIMIT_AS`, soft and hard, so the child cannot
/// raise it): an allocation beyond it fails inside the child instead of growing until the
/// kernel's out-of-memory killer picks a process, maybe the parent.
#[cfg(target_os = "linux")]
pub(super) fn apply(command: &mut Command, memory_limit: Option<u64>, shared_fd: Option<i32>) {
    use std::os::unix::process::CommandExt;

    #[cfg(target_env = "gnu")]
    type Resource = libc::__rlimit_resource_t;
    #[cfg(not(target_env = "gnu"))]
    type Resource = libc::c_int;

    fn set(resource: Resource, value: u64) -> std::io::Result<()> {
        let limit = libc::rlimit {
            rlim_cur: value as libc::rlim_t,
            rlim_max: value as libc::rlim_t,
        };
        // SAFETY: `limit` is a valid `rlimit` for the duration of the call, which only reads
        // it.
        if unsafe { libc::setrlimit(resource, &limit) } == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// Makes `fd` (the parent's, closed on exec) the child's descriptor `SHARED_FD`, kept
    /// across exec.
    fn hand_over(fd: i32) -> std::io::Result<()> {
        let target = super::worker::SHARED_FD;
        // SAFETY: `dup2` and `fcntl` only change this process's descriptor table; `fd` is
        // open (the parent keeps it open until the child has started).
        let ok = unsafe {
            if fd == target {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                flags >= 0 && libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) >= 0
            } else {
                libc::dup2(fd, target) == target
            }
        };
        if ok {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    // SAFETY: the closure runs in the child between fork and exec. It calls only
    // `setrlimit`, `dup2` and `fcntl` (async-signal-safe) and reads `errno` on failure (no
    // allocation: an OS error is stored inline), takes no lock and touches no memory shared
    // with the parent but the copied `memory_limit` and `shared_fd`.
    unsafe {
        command.pre_exec(move || {
            set(libc::RLIMIT_CORE, 0)?;
            if let Some(bytes) = memory_limit {
                set(libc::RLIMIT_AS, bytes)?;
            }
            if let Some(fd) = shared_fd {
                hand_over(fd)?;
            }
            Ok(())
        });
    }
}

/// Elsewhere no limit is set: [`super::Isolation::run`] refuses a memory limit there.
#[cfg(not(target_os = "linux"))]
pub(super) fn apply(_command: &mut Command, _memory_limit: Option<u64>, _shared_fd: Option<i32>) {}

/// Whether [`apply`] can bound memory on this platform.
pub(super) const MEMORY_LIMITS: bool = cfg!(target_os = "linux");
