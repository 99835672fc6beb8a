//! Progress of a long job on stderr: a line redrawn in place with the
//! count, the rate and the time left on a terminal; a plain line every
//! ten seconds otherwise (logs, CI), so neither floods its reader.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraws per second on a terminal.
const TTY_EVERY: Duration = Duration::from_millis(200);
/// Lines per ten seconds elsewhere.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct Progress {
    label: String,
    unit: &'static str,
    started: Instant,
    shown: Instant,
    tty: bool,
    quiet: bool,
}

impl Progress {
    /// Progress of `label`, counting `unit`s; `quiet` shows nothing.
    pub fn new(label: &str, unit: &'static str, quiet: bool) -> Progress {
        let now = Instant::now();
        Progress {
            label: label.to_string(),
            unit,
            started: now,
            shown: now,
            tty: std::io::stderr().is_terminal(),
            quiet,
        }
    }

    /// `done` of `total` (0 when unknown).
    pub fn update(&mut self, done: u64, total: u64) {
        let every = if self.tty { TTY_EVERY } else { PLAIN_EVERY };
        if self.quiet || self.shown.elapsed() < every {
            return;
        }
        self.shown = Instant::now();
        let line = self.line(done, total);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// The last line, always shown unless quiet.
    pub fn finish(&mut self, done: u64) {
        if self.quiet {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        let line = format!(
            "{}: {done} {} in {secs:.1} s ({:.0}/s)",
            self.label,
            self.unit,
            done as f64 / secs.max(1e-3)
        );
        if self.tty {
            eprintln!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }

    fn line(&self, done: u64, total: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let mut line = format!("{}: {done}", self.label);
        if total > done {
            line.push_str(&format!("/{total}"));
        }
        line.push_str(&format!(" {} ({rate:.0}/s", self.unit));
        if total > done && rate > 0.0 {
            let left = ((total - done) as f64 / rate) as u64;
            line.push_str(&format!(", {}:{:02} left", left / 60, left % 60));
        }
        line.push(')');
        line
    }
}
