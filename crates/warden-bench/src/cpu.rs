//! CPU accounting from `/proc` (Linux), to say where the time of a workload went: the
//! server process, the worker processes, and the whole machine (PostgreSQL, the bench
//! itself and anything else running make up the rest). `None` where `/proc` is missing.

/// Clock ticks per second of `/proc` times (`USER_HZ`, 100 on every mainstream Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// User + system CPU seconds a process has used so far.
pub fn process_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_process_stat(&stat)
}

/// User + system CPU seconds this process has used so far.
pub fn own_secs() -> Option<f64> {
    process_secs(std::process::id())
}

/// Busy CPU seconds of the whole machine, all cores, since boot (everything but idle and
/// I/O wait).
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_stat(&stat)
}

fn parse_process_stat(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 overall, utime 14 and stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

fn parse_machine_stat(stat: &str) -> Option<f64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    Some(busy / TICKS_PER_SEC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stat_fields() {
        let stat =
            "1234 (warden (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0";
        assert_eq!(parse_process_stat(stat), Some(3.0));
    }

    #[test]
    fn machine_stat_fields() {
        let stat = "cpu  100 20 30 1000 50 5 5 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n";
        assert_eq!(parse_machine_stat(stat), Some(1.6));
    }

    #[test]
    fn this_process_is_found() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(own_secs().is_some());
            assert!(machine_busy_secs().is_some());
        }
    }
}
