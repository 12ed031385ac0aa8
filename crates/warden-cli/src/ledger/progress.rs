//! One progress line on stderr, redrawn in place at most ten times a second, and only
//! when stderr is a terminal: logs and pipes get nothing.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// The shortest time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// A progress line: `label: 12,345 entries (40,000/s), 3.1 MB`.
pub struct Progress {
    /// Off when stderr is not a terminal.
    enabled: bool,
    /// What is being done ("verifying", "exporting").
    label: &'static str,
    /// For the rate.
    started: Instant,
    /// When the line was last drawn (at first: the start, so a quick run shows nothing).
    drawn_at: Instant,
    /// Whether anything is on the line to erase.
    drawn: bool,
}

impl Progress {
    /// A progress line, shown only if stderr is a terminal.
    pub fn new(label: &'static str) -> Self {
        let now = Instant::now();
        Self {
            enabled: std::io::stderr().is_terminal(),
            label,
            started: now,
            drawn_at: now,
            drawn: false,
        }
    }

    /// A progress line that never shows (e.g. when stdout shares the terminal).
    pub fn hidden(label: &'static str) -> Self {
        Self {
            enabled: false,
            ..Self::new(label)
        }
    }

    /// Report the work so far; redraws if the last redraw is old enough.
    pub fn update(&mut self, entries: Option<u64>, bytes: u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.drawn_at) < REDRAW_EVERY {
            return;
        }
        self.drawn_at = now;
        self.drawn = true;
        let secs = now.duration_since(self.started).as_secs_f64().max(1e-3);
        let line = match entries {
            Some(n) => format!(
                "{}: {} entries ({}/s), {}",
                self.label,
                thousands(n),
                thousands((n as f64 / secs) as u64),
                human_bytes(bytes)
            ),
            None => format!(
                "{}: {} ({}/s)",
                self.label,
                human_bytes(bytes),
                human_bytes((bytes as f64 / secs) as u64)
            ),
        };
        let mut stderr = std::io::stderr().lock();
        // Progress is decoration: a failed write to stderr must not fail the command.
        let _ = write!(stderr, "\r\x1b[2K{line}");
        let _ = stderr.flush();
    }

    /// Erase the line, so what follows starts on a clean line.
    pub fn finish(&mut self) {
        if std::mem::take(&mut self.drawn) {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B, kB, MB or GB (powers of 1000, one decimal).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1500), "1.5 kB");
        assert_eq!(human_bytes(3_100_000), "3.1 MB");
    }
}
