//! Process identity and control for local rooms: the `"<pid>:<starttime>"` reference that survives
//! controller restarts, pidfds, signals to a room's process group, and reaping.
//!
//! Must always hold: a pid alone never identifies a room. A reference matches a process only when
//! both its pid and its start time (field 22 of `/proc/<pid>/stat`) match, so a recycled pid is
//! never mistaken for the room; and once a pidfd is open, signals and waits go through it or
//! through the room's own process group while its leader cannot have been reaped by anyone else.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::str::FromStr;
use std::sync::Arc;

use rustix::process::{Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// A room's process, robustly: its pid and the kernel's start time of that pid (clock ticks since
/// boot), which together never name two processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcRef {
    pub pid: i32,
    pub starttime: u64,
}

impl fmt::Display for ProcRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.pid, self.starttime)
    }
}

/// A runtime reference that is not `"<pid>:<starttime>"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid local runtime reference {0:?}: expected \"<pid>:<starttime>\"")]
pub struct BadProcRef(pub String);

impl FromStr for ProcRef {
    type Err = BadProcRef;

    fn from_str(s: &str) -> Result<Self, BadProcRef> {
        let bad = || BadProcRef(s.to_owned());
        let (pid, start) = s.split_once(':').ok_or_else(bad)?;
        let pid: i32 = pid.parse().map_err(|_| bad())?;
        let starttime: u64 = start.parse().map_err(|_| bad())?;
        if pid <= 0 {
            return Err(bad());
        }
        Ok(Self { pid, starttime })
    }
}

impl ProcRef {
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.pid).expect("ProcRef pids are positive")
    }

    /// The reference of the process that has `pid` now; `Ok(None)` when there is none.
    pub fn of(pid: i32) -> io::Result<Option<ProcRef>> {
        Ok(read_stat(pid)?.map(|stat| ProcRef {
            pid,
            starttime: stat.starttime,
        }))
    }

    /// Whether this very process still runs (a zombie, ended but not reaped, does not).
    pub fn is_running(&self) -> bool {
        matches!(read_stat(self.pid), Ok(Some(stat)) if stat.starttime == self.starttime && !stat.ended())
    }
}

/// The fields of `/proc/<pid>/stat` this runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    /// Field 3: `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 4.
    pub ppid: i32,
    /// Field 5.
    pub pgrp: i32,
    /// Field 22: start time after boot, in clock ticks.
    pub starttime: u64,
}

impl Stat {
    /// The process has ended and only waits to be reaped.
    pub fn ended(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Parse the content of `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may
/// itself contain spaces and parentheses, so fields are counted from the *last* `)`.
pub fn parse_stat(content: &str) -> Option<Stat> {
    let rest = &content[content.rfind(')')? + 1..];
    // `rest` starts at field 3 (state): field N is at index N - 3.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        starttime: fields.get(19)?.parse().ok()?,
    })
}

/// Read `/proc/<pid>/stat`. `Ok(None)` when there is no such process.
pub fn read_stat(pid: i32) -> io::Result<Option<Stat>> {
    let path = format!("/proc/{pid}/stat");
    match std::fs::read_to_string(&path) {
        Ok(content) => parse_stat(&content).map(Some).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {path}"))
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        // A process that vanishes while being read.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Open a pidfd on `pid`. `Ok(None)` when there is no such process.
pub fn open_pidfd(pid: Pid) -> io::Result<Option<OwnedFd>> {
    match rustix::process::pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::SRCH) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Signal every process of the group `pgid`. A group that is already gone is not an error.
/// Processes whose environment names them room `room` of `scheduler`: how a room whose start
/// was interrupted before its process was recorded is found again.
pub fn find_room_processes(scheduler: &str, room: &str) -> Vec<i32> {
    let want_room = format!("TROUPE_ROOM={room}");
    let want_scheduler = format!("TROUPE_SCHEDULER={scheduler}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                let mut vars = env.split(|b| *b == 0);
                let (mut r, mut s) = (false, false);
                for v in &mut vars {
                    r |= v == want_room.as_bytes();
                    s |= v == want_scheduler.as_bytes();
                }
                r && s
            })
        })
        .collect()
}

pub fn signal_group(pgid: Pid, sig: Signal) -> io::Result<()> {
    match rustix::process::kill_process_group(pgid, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Signal the one process behind `pidfd`. A process that has already exited is not an error.
pub fn signal_pidfd(pidfd: impl AsFd, sig: Signal) -> io::Result<()> {
    match rustix::process::pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Register a pidfd with tokio: the result turns readable once the process has ended.
pub fn watch_pidfd(pidfd: Arc<OwnedFd>) -> io::Result<AsyncFd<Arc<OwnedFd>>> {
    // SAFETY: the `Arc` keeps the descriptor open for as long as the `AsyncFd` holds it, nothing
    // closes an `OwnedFd` behind its owner's back, and `as_raw_fd` of one `Arc<OwnedFd>` always
    // returns the same descriptor. tokio's safe constructor is deprecated, so this cannot be done
    // without `unsafe`.
    unsafe { AsyncFd::register_with_interest(pidfd, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this status.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// Not our child (adopted after a restart): only its parent can learn the status.
    Unknown,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exited with status {c}"),
            ExitStatus::Signal(s) => write!(f, "killed by signal {s}"),
            ExitStatus::Unknown => write!(
                f,
                "exited (status unknown: not started by this controller process)"
            ),
        }
    }
}

/// Reap the exited process behind `pidfd` and return its status. Without blocking: call it once the
/// pidfd is readable. A process that is not our child (or was reaped elsewhere) has an unknown
/// status.
pub fn reap(pidfd: impl AsFd) -> ExitStatus {
    match rustix::process::waitid(
        WaitId::PidFd(pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
    ) {
        Ok(Some(st)) => {
            if let Some(code) = st.exit_status() {
                ExitStatus::Code(code)
            } else if let Some(sig) = st.terminating_signal() {
                ExitStatus::Signal(sig)
            } else {
                ExitStatus::Unknown
            }
        }
        Ok(None) | Err(_) => ExitStatus::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runtime_ref_round_trips_and_refuses_garbage() {
        let r: ProcRef = "1234:987654".parse().unwrap();
        assert_eq!(
            r,
            ProcRef {
                pid: 1234,
                starttime: 987654
            }
        );
        assert_eq!(r.to_string(), "1234:987654");
        for bad in ["", "1234", "abc:1", "1:abc", "0:5", "-3:5", "1:2:3"] {
            assert!(bad.parse::<ProcRef>().is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with spaces and a `)` must not shift the fields.
        let stat = "4242 (my) (room x) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    5550123 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(stat),
            Some(Stat {
                state: 'S',
                ppid: 17,
                pgrp: 4242,
                starttime: 5550123
            })
        );
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn our_own_stat_is_readable_and_a_missing_pid_is_none() {
        let me = rustix::process::getpid().as_raw_pid();
        let stat = read_stat(me).unwrap().expect("our own process exists");
        assert!(stat.starttime > 0 && !stat.ended());
        let me = ProcRef::of(me).unwrap().unwrap();
        assert!(me.is_running());
        assert!(
            !ProcRef {
                starttime: me.starttime + 1,
                ..me
            }
            .is_running()
        );
        // pid_max is at most 2^22: this pid never exists.
        assert_eq!(read_stat(i32::MAX).unwrap(), None);
    }

    #[test]
    fn exit_statuses_read_like_a_shell_would_say_them() {
        assert_eq!(ExitStatus::Code(1).to_string(), "exited with status 1");
        assert_eq!(ExitStatus::Signal(9).to_string(), "killed by signal 9");
        assert!(ExitStatus::Code(0).success());
        assert!(!ExitStatus::Signal(15).success());
    }
}
