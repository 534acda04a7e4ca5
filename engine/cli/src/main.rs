//! The `kiln` command: parses the command line (buildah's verbs and flags) and hands each verb
//! to its module under `cmd/`. Policy lives here; mechanism lives in the engine crates.

mod cmd;
mod global;

use clap::Parser;

fn main() {
    let cli = cmd::Cli::parse();
    global::init_logging(&cli.global);
    if let Err(err) = cmd::run(cli) {
        eprintln!("Error: {err:#}");
        std::process::exit(global::exit_code(&err));
    }
}
