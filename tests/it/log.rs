//! What was logged: a slog drain that keeps every record, for tests that
//! check a crawl's lines, and the test binary's `log` facade logger, for
//! the library's default logger (which forwards there).

use std::sync::{Arc, Mutex};

/// A log record's key-values, rendered.
pub type Fields = std::collections::HashMap<String, String>;

/// Log records, each as its message and its key-values.
#[derive(Clone, Default)]
pub struct Records(Arc<Mutex<Vec<(String, Fields)>>>);

impl slog::Drain for Records {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record, values: &slog::OwnedKVList) -> Result<(), slog::Never> {
        struct Collect(Fields);
        impl slog::Serializer for Collect {
            fn emit_arguments(
                &mut self,
                key: slog::Key,
                val: &std::fmt::Arguments,
            ) -> slog::Result {
                self.0.insert(key.to_string(), val.to_string());
                Ok(())
            }
        }
        let mut kv = Collect(Default::default());
        let _ = slog::KV::serialize(&record.kv(), record, &mut kv);
        let _ = slog::KV::serialize(values, record, &mut kv);
        let msg = record.msg().to_string();
        self.0.lock().unwrap().push((msg, kv.0));
        Ok(())
    }
}

impl Records {
    pub fn logger(&self) -> slog::Logger {
        slog::Logger::root(self.clone(), slog::o!())
    }

    /// The key-values of every record logged as `msg`.
    pub fn lines(&self, msg: &str) -> Vec<Fields> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, _)| m == msg)
            .map(|(_, kv)| kv.clone())
            .collect()
    }

    /// Every record, message and key-values, as one text (to check what
    /// never appears in any of them).
    pub fn text(&self) -> String {
        format!("{:?}", self.0.lock().unwrap())
    }
}

/// One line that reached the `log` facade: its level, target and text.
pub type FacadeLine = (::log::Level, String, String);

/// The `log` facade's logger of this test binary (a process has one):
/// installed on first use, from info up. It keeps only the lines holding a
/// marker some test asked for ([`Facade::keep`]), so that the lines of the
/// other tests' crawls, which log there too, do not pile up.
pub struct Facade {
    /// Texts a kept line holds one of.
    markers: Mutex<Vec<String>>,
    /// The kept lines, in order.
    lines: Mutex<Vec<FacadeLine>>,
}

impl ::log::Log for Facade {
    fn enabled(&self, m: &::log::Metadata<'_>) -> bool {
        m.level() <= ::log::Level::Info
    }

    fn log(&self, r: &::log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let text = r.args().to_string();
        if self
            .markers
            .lock()
            .unwrap()
            .iter()
            .any(|m| text.contains(m))
        {
            let line = (r.level(), r.target().to_string(), text);
            self.lines.lock().unwrap().push(line);
        }
    }

    fn flush(&self) {}
}

impl Facade {
    /// Keeps from now on the lines whose text holds `marker`.
    pub fn keep(&self, marker: &str) {
        self.markers.lock().unwrap().push(marker.to_string());
    }

    /// The kept lines holding `marker`.
    pub fn lines(&self, marker: &str) -> Vec<FacadeLine> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.2.contains(marker))
            .cloned()
            .collect()
    }
}

/// The binary's facade logger, installed on first use.
pub fn facade() -> &'static Facade {
    static FACADE: std::sync::OnceLock<&'static Facade> = std::sync::OnceLock::new();
    FACADE.get_or_init(|| {
        let facade: &'static Facade = Box::leak(Box::new(Facade {
            markers: Mutex::default(),
            lines: Mutex::default(),
        }));
        ::log::set_logger(facade).expect("no other logger in this test binary");
        ::log::set_max_level(::log::LevelFilter::Info);
        facade
    })
}

/// A one-page spider with a name of its own, to find its lines.
struct Named(&'static str, spinneret::Request<()>);

impl spinneret::Spider for Named {
    type Callback = ();

    fn name(&self) -> &str {
        self.0
    }

    fn start_requests(&self) -> spinneret::StartRequests<()> {
        Box::new(std::iter::once(self.1.clone()))
    }

    fn parse(
        &self,
        _: (),
        _: &spinneret::Response,
        out: &mut spinneret::Output<()>,
    ) -> Result<(), spinneret::Error> {
        out.item(serde_json::json!({"page": 1}));
        Ok(())
    }
}

#[actix::test]
async fn a_crawl_without_a_logger_logs_through_the_log_facade() {
    let facade = facade();
    let marker = " spider=facade_default";
    facade.keep(marker);
    let site = crate::fixture::serve(3);
    let start = spinneret::Request::get(&site.url("/p/0")).unwrap();
    let stats =
        crate::spiders::run(spinneret::Crawler::builder(Named("facade_default", start))).await;
    assert_eq!(stats.get("item_scraped_count"), 1);
    let lines = facade.lines(marker);
    let finished: Vec<_> = lines
        .iter()
        .filter(|(_, _, text)| {
            text.starts_with("crawl finished ") && text.contains(" reason=finished ")
        })
        .collect();
    assert_eq!(finished.len(), 1, "one finish line, got: {lines:#?}");
    let (level, target, _) = finished[0];
    assert_eq!(
        (*level, target.as_str()),
        (::log::Level::Info, "spinneret::actors::engine")
    );
    let progress = lines.iter().filter(|(level, _, text)| {
        *level == ::log::Level::Info
            && text.starts_with("progress ")
            && text.contains(" pages=1 ")
            && text.contains(" items=1 ")
    });
    assert_eq!(progress.count(), 1, "one final progress line: {lines:#?}");
}
