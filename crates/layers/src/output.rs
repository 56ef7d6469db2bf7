//! Standard output: the one place the binary writes results to stdout.

use std::io::Write;

/// Writes one line of command output to stdout.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
