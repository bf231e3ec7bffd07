//! Project tasks, run as `cargo xtask <task>`.
fn main() {
    eprintln!("xtask: no task yet");
    std::process::exit(2);
}
