//! The library's default logger: a slog drain that forwards every record
//! to the `log` facade, so whatever logger the host installed
//! (`env_logger`, a `tracing` subscriber through `tracing-log`, …) shows
//! the crawl's lines with the host's own filter. A host that passes its
//! own slog `Logger` to the builder bypasses it.
//!
//! The record's target is its module path (`spinneret::actors::engine`),
//! its message the slog message followed by its key-values as `key=value`
//! pairs (the record's own first, then the logger's).

use std::fmt::{self, Write as _};

use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};

/// Forwards to the `log` facade; see the module docs.
pub(crate) struct LogFacade;

/// A logger over [`LogFacade`].
pub(crate) fn default_logger() -> slog::Logger {
    slog::Logger::root(LogFacade.fuse(), slog::o!())
}

impl Drain for LogFacade {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        let level = level_of(record.level());
        let target = record.module();
        let logger = log::logger();
        let metadata = log::Metadata::builder().level(level).target(target).build();
        if level > log::max_level() || !logger.enabled(&metadata) {
            return Ok(());
        }
        let mut pairs = Pairs(String::new());
        let _ = record.kv().serialize(record, &mut pairs);
        let _ = values.serialize(record, &mut pairs);
        logger.log(
            &log::Record::builder()
                .metadata(metadata)
                .args(format_args!("{}{}", record.msg(), pairs.0))
                .module_path(Some(record.module()))
                .file(Some(record.file()))
                .line(Some(record.line()))
                .build(),
        );
        Ok(())
    }
}

/// slog's level as `log`'s (critical is an error).
fn level_of(level: slog::Level) -> log::Level {
    match level {
        slog::Level::Critical | slog::Level::Error => log::Level::Error,
        slog::Level::Warning => log::Level::Warn,
        slog::Level::Info => log::Level::Info,
        slog::Level::Debug => log::Level::Debug,
        slog::Level::Trace => log::Level::Trace,
    }
}

/// Key-values as ` key=value` text.
struct Pairs(String);

impl Serializer for Pairs {
    fn emit_arguments(&mut self, key: Key, value: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, OnceLock};

    use super::*;

    /// Every line the facade received: (level, target, text).
    struct Capture(Mutex<Vec<(log::Level, String, String)>>);

    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata<'_>) -> bool {
            m.level() <= log::Level::Info
        }
        fn log(&self, r: &log::Record<'_>) {
            if self.enabled(r.metadata()) {
                let line = (r.level(), r.target().to_string(), r.args().to_string());
                self.0.lock().unwrap().push(line);
            }
        }
        fn flush(&self) {}
    }

    fn capture() -> &'static Capture {
        static CAPTURE: OnceLock<&'static Capture> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let c: &'static Capture = Box::leak(Box::new(Capture(Mutex::new(Vec::new()))));
            log::set_logger(c).expect("the only logger of this test binary");
            log::set_max_level(log::LevelFilter::Trace);
            c
        })
    }

    #[test]
    fn records_reach_the_log_facade_with_their_level_and_key_values() {
        let lines = capture();
        let log = default_logger().new(slog::o!("spider" => "docs"));
        slog::info!(log, "crawl finished"; "pages" => 3);
        slog::warn!(log, "slow host"; "host" => "a.example");
        slog::debug!(log, "filtered out by the host's level");
        let got = lines.0.lock().unwrap().clone();
        let mine: Vec<_> = got
            .into_iter()
            .filter(|(_, target, _)| target == module_path!())
            .collect();
        assert_eq!(
            mine,
            [
                (
                    log::Level::Info,
                    module_path!().to_string(),
                    "crawl finished pages=3 spider=docs".to_string()
                ),
                (
                    log::Level::Warn,
                    module_path!().to_string(),
                    "slow host host=a.example spider=docs".to_string()
                ),
            ]
        );
    }
}
