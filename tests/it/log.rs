//! A slog drain that keeps every record, for tests that check what was
//! logged.

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
