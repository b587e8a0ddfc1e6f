//! Writing to the terminal without panicking.
//!
//! `println!` panics when whoever reads the output has gone (`dkv status | head -5` closes the
//! pipe after five lines), and `eprintln!` when stderr is closed. A command whose reader went
//! away has nobody left to tell anything, so it ends quietly, with status 0 as `head` got what it
//! asked for; any other failure to write (a full disk) is reported, with status 1.

use std::io::Write;

/// Print a line on stdout: `outln!("{x}")`.
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => { $crate::out::stdout(format!("{}\n", format_args!($($arg)*)).as_bytes()) };
}

/// Print a line on stderr, ignoring a closed stderr: `errln!("{x}")`.
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => { $crate::out::stderr(format!("{}\n", format_args!($($arg)*)).as_bytes()) };
}

/// Write `bytes` to stdout; a closed pipe ends the process quietly.
pub fn stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        stderr(format!("dkv: writing to stdout: {e}\n").as_bytes());
        std::process::exit(crate::commands::exit::UNAVAILABLE);
    }
}

/// Write `bytes` to stderr, if anyone is listening.
pub fn stderr(bytes: &[u8]) {
    let _ = std::io::stderr().lock().write_all(bytes);
}
