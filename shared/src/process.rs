//! Process-wide settings every binary applies before it starts serving.

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
