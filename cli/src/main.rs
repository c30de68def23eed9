//! The `bnnc` binary: parses arguments, runs the command, prints any error as
//! one clean message and exits with code 1.

use std::io::{self, Write};
use std::process::ExitCode;

use bnnc_cli::commands::{Cli, CliError};
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let result = bnnc_cli::commands::run(&cli, &mut out);
    let flushed = out.flush().map_err(CliError::Stdout);
    match result.and(flushed) {
        Ok(()) => ExitCode::SUCCESS,
        // `bnnc print model.ir | head`: the reader left; nothing to report.
        Err(CliError::Stdout(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            // Messages escape what they quote from files; this catches the
            // rest (a path typed with a control character), line by line.
            for line in e.to_string().lines() {
                eprintln!("{}", bnnc_ir::error::escape(line));
            }
            ExitCode::from(1)
        }
    }
}
