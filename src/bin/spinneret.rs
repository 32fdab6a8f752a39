//! The `spinneret` command: the crate's command line with no spiders of
//! its own registered (`crawl`, `fetch` and `css` need none). A project's
//! own binary calls `spinneret::cli::main` with its registry instead.

fn main() -> std::process::ExitCode {
    spinneret::cli::main(spinneret::SpiderRegistry::new())
}
