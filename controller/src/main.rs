//! The `switchyard` binary: argument parsing is in [`switchyard::cli`].

fn main() -> std::process::ExitCode {
    switchyard::cli::main()
}
