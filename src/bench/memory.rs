//! Peak resident memory (VmHWM) of one benchmark phase. Linux keeps one high-water mark per
//! process; writing 5 to /proc/self/clear_refs resets it to the current RSS, so each phase
//! starts its own. Where that is not possible (not Linux, restricted /proc) phases report
//! nothing rather than an earlier phase's peak.

use std::fs;
use std::sync::atomic::{AtomicU64, Ordering};

/// The largest high-water mark seen before any reset, so the whole run's peak survives them.
static RUN_PEAK_KIB: AtomicU64 = AtomicU64::new(0);

/// A phase whose peak memory is being tracked.
pub struct PeakMemory {
    reset: bool,
}

impl PeakMemory {
    /// Starts a phase: resets the process high-water mark.
    pub fn start() -> PeakMemory {
        remember_run_peak();
        PeakMemory {
            reset: fs::write("/proc/self/clear_refs", "5").is_ok(),
        }
    }

    /// The phase's peak resident memory in MiB so far (None when it cannot be told apart).
    pub fn peak_mib(&self) -> Option<f64> {
        if self.reset { vm_hwm_mib() } else { None }
    }

    /// The process's peak since it started, across phase resets.
    pub fn whole_run_mib() -> Option<f64> {
        remember_run_peak();
        let kib = RUN_PEAK_KIB.load(Ordering::Relaxed);
        (kib > 0).then(|| kib as f64 / 1024.0)
    }
}

fn remember_run_peak() {
    if let Some(kib) = vm_hwm_kib() {
        RUN_PEAK_KIB.fetch_max(kib, Ordering::Relaxed);
    }
}

fn vm_hwm_mib() -> Option<f64> {
    vm_hwm_kib().map(|kib| kib as f64 / 1024.0)
}

/// VmHWM from /proc/self/status.
fn vm_hwm_kib() -> Option<u64> {
    parse_vm_hwm_kib(&fs::read_to_string("/proc/self/status").ok()?)
}

fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_high_water_mark_line() {
        let status = "Name:\tpolycnn\nVmPeak:\t  900 kB\nVmHWM:\t   13520 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(13520));
        assert_eq!(parse_vm_hwm_kib("VmRSS: 1 kB"), None);
    }

    #[test]
    fn a_phase_sees_its_own_allocation() {
        let phase = PeakMemory::start();
        let Some(before) = phase.peak_mib() else { return };
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = phase.peak_mib().expect("readable once readable");
        assert!(
            after >= before + 60.0,
            "{before} MiB → {after} MiB after touching 64 MiB"
        );
    }
}
