//! What a bench run costs the process: CPU time and peak resident
//! memory, read from Linux's `/proc/self`.

use std::time::Duration;

/// CPU time (user + system) of this process so far, from `/proc/self/stat`.
#[must_use]
pub fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_time(&stat)
}

/// Parses `utime` and `stime` (fields 14 and 15, in clock ticks of
/// 1/100 s, Linux's fixed `USER_HZ`) out of a `/proc/<pid>/stat` line.
fn parse_cpu_time(stat: &str) -> Option<Duration> {
    // The command name (field 2) may hold spaces and parentheses: fields
    // are counted from after its last ')'. Field 3 is the first one there.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
#[must_use]
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_cpu_time() {
        let line = "1234 (orion (bus) x) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100 200 300";
        assert_eq!(parse_cpu_time(line), Some(Duration::from_secs(3)));
        assert_eq!(parse_cpu_time("garbage"), None);
        assert!(process_cpu_time().is_some());
    }

    #[test]
    fn proc_status_peak_rss() {
        let status = "Name:\tx\nVmPeak:\t  100 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(2048 * 1024));
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss_bytes().is_some_and(|b| b > 0));
    }
}
