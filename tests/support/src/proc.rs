//! Child processes of a test or benchmark: killed when dropped, so a failing test leaves no
//! server behind.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A child process, killed (SIGKILL) and reaped when dropped.
#[derive(Debug)]
pub struct Proc(Child);

impl Proc {
    pub fn new(child: Child) -> Self {
        Self(child)
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The exit status, once the process has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.0.try_wait().ok().flatten()
    }

    /// SIGKILL (as a crash would), then reap.
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then wait up to `within` for the process to exit. Its exit status, or `None`
    /// when it was still running (it is then killed).
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        status_kb(self.pid(), "VmHWM:") * 1024
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `kB` field of `/proc/<pid>/status` (0 when unreadable).
pub fn status_kb(pid: u32, field: &str) -> u64 {
    proc_kb(&format!("/proc/{pid}/status"), field).unwrap_or(0)
}

/// The number of a `<field> <n> kB` line in a `/proc` file (`/proc/meminfo`,
/// `/proc/<pid>/smaps_rollup`, ...); `field` includes its colon. `None` when the file cannot
/// be read or has no such line.
pub fn proc_kb(path: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Poll `ready` every 100 ms until it holds; panic with the process's `log` after `within`.
pub fn wait_until(what: &str, log: &Path, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within {within:?}; log {}:\n{}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_proc_is_gone_and_terminate_reports_the_exit() {
        let proc = Proc::new(Command::new("sleep").arg("300").spawn().unwrap());
        let pid = proc.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(proc);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());

        let mut proc = Proc::new(Command::new("sleep").arg("300").spawn().unwrap());
        let status = proc
            .terminate(Duration::from_secs(10))
            .expect("sleep exits on SIGTERM");
        assert!(!status.success());
    }

    #[test]
    fn reads_its_own_memory() {
        assert!(status_kb(std::process::id(), "VmHWM:") > 0);
    }
}
