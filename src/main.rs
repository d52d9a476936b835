//! The `archproof` command line: parse, call the library, map errors to exit codes.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    // Output piped into `head` and the like: end quietly when the reader goes, as other
    // command-line tools do, instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default action of a signal, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One line: the error and its causes, most specific last.
            let msg: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("error: {}", msg.join(": "));
            ExitCode::from(2)
        }
    }
}
