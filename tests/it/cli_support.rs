//! What the command-line tests share.

use std::path::Path;
use std::process::{Command, Stdio};

/// A command for the binary at `path`, stdin closed, without the test
/// environment's `SPINNERET_*` variables (settings refuse keys they do not
/// know, and a developer's own would change what is tested) nor its proxy
/// variables (every test site is on a loopback address; a test that wants
/// a proxy sets one on the command).
pub fn clean_command(path: &Path) -> Command {
    let mut command = Command::new(path);
    for (name, _) in std::env::vars_os() {
        let text = name.to_string_lossy();
        if text.starts_with("SPINNERET_") || text.to_ascii_lowercase().ends_with("_proxy") {
            command.env_remove(name);
        }
    }
    command.stdin(Stdio::null());
    command
}
