//! `skopos-loggen`: a tiny log generator for the Docker tests. Prints
//! `<prefix> out <i>` for i in 1..=N to stdout and `<prefix> err <i>` for
//! i in 1..=M to stderr, then sleeps (so the container keeps running)
//! for the given number of seconds.
//!
//! Usage: `skopos-loggen <prefix> <N> <M> <sleep_secs>`

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let prefix = arg(1, "loggen");
    let n: u64 = arg(2, "3").parse().unwrap_or(3);
    let m: u64 = arg(3, "1").parse().unwrap_or(1);
    let sleep: u64 = arg(4, "60").parse().unwrap_or(60);
    let mut out = std::io::stdout().lock();
    for i in 1..=n {
        writeln!(out, "{prefix} out {i}").unwrap();
    }
    out.flush().unwrap();
    let mut err = std::io::stderr().lock();
    for i in 1..=m {
        writeln!(err, "{prefix} err {i}").unwrap();
    }
    err.flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(sleep));
}
