//! Process-wide settings every binary applies before it starts serving: transparent huge
//! pages off ([`prepare`]), then key/value logging ([`Prepared::init_logging`]).

/// Where the log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogOutput {
    /// Standard error, with colours only when it is a terminal (ta-edge).
    Stderr,
    /// Standard output, `tracing_subscriber`'s default format and colours (ta-loader, ta-query).
    Stdout,
}

/// The first step of a binary's `main`: turns off transparent huge pages (see
/// [`disable_transparent_huge_pages`]) before anything else allocates much. The outcome is
/// reported once logging is up ([`Prepared::init_logging`]).
#[must_use = "call init_logging, which also reports whether huge pages could be turned off"]
pub fn prepare() -> Prepared {
    Prepared {
        huge_pages_off: disable_transparent_huge_pages(),
    }
}

/// A process whose huge-page setting is done and whose logging is not yet set up.
#[derive(Debug)]
pub struct Prepared {
    huge_pages_off: std::io::Result<()>,
}

impl Prepared {
    /// Install the global logger with `filter` (tracing `EnvFilter` syntax) writing to
    /// `output`, then warn if huge pages could not be turned off.
    pub fn init_logging(self, filter: &str, output: LogOutput) {
        let logger =
            tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::new(filter));
        match output {
            LogOutput::Stderr => {
                use std::io::IsTerminal;
                logger
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr)
                    .init();
            }
            LogOutput::Stdout => logger.init(),
        }
        if let Err(e) = self.huge_pages_off {
            tracing::warn!(error = %e, "could not turn off transparent huge pages; resident memory may grow in 2 MiB steps");
        }
    }
}

/// Turn off transparent huge pages for this process (Linux `PR_SET_THP_DISABLE`).
///
/// mimalloc, the allocator of ta-edge and ta-loader, asks the kernel for huge pages on its
/// arenas (`MADV_HUGEPAGE`), so a partly used 2 MiB region counts in full and stays resident:
/// the resident size then no longer follows the live heap and grows in steps long after the
/// bounded state is full (`bench/README.md`, soak, has the figures). The services' heaps are small, so the
/// TLB savings of huge pages do not matter to them; a resident size that follows the heap does
/// (memory limits, leak detection). Also applied to ta-query, which uses the system allocator,
/// for machines whose kernel has THP set to `always`.
///
/// This call cannot reach memory touched before it: the Rust runtime allocates before `main`,
/// and `#[tokio::main]` starts its workers (each with a mimalloc heap of its own) before the
/// body runs, so with only this call the services still hold huge pages from their first
/// allocations. mimalloc is therefore also built with its `no_thp`
/// feature (the workspace `Cargo.toml`), which drops its `MADV_HUGEPAGE` request altogether;
/// on a kernel in `madvise` mode (Debian's default) that alone keeps every page small.
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn the_kernel_reports_huge_pages_off_for_the_process() {
        super::disable_transparent_huge_pages().unwrap();
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("THP_enabled:"))
            .expect("THP_enabled in /proc/self/status (Linux 5.0+)");
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}
