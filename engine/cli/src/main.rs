//! The `kiln` command: parses the command line (buildah's verbs and flags) and hands each verb
//! to its module under `cmd/`. Policy lives here; mechanism lives in the engine crates.

mod cmd;
mod global;

use clap::Parser;

fn main() {
    quiet_on_closed_stdout();
    let cli = cmd::Cli::parse();
    global::init_logging(&cli.global);
    if let Err(err) = cmd::run(cli) {
        eprintln!("Error: {}", global::error_text(&err));
        std::process::exit(global::exit_code(&err));
    }
}

/// Printing into a closed pipe (`kiln images | head -1`) makes `println!` panic, since Rust
/// ignores SIGPIPE (which kiln keeps ignored: its own pipes to build steps must not kill it).
/// A command-line tool should end quietly there instead, with the status a shell reports for
/// SIGPIPE, as `ls` or `cat` do.
fn quiet_on_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default_hook(info);
    }));
}
