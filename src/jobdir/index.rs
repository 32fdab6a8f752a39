//! A finished crawl's page index, read as a re-crawl's start needs it.
//!
//! A re-crawl starts without the finished crawl's requests, dupe store or
//! stats, so its start reads of each record only what says whether the
//! crawl finished (the ids accepted and completed, the start position) and
//! the page index. The page records are kept as the JSON they were written
//! as, keyed by their URL: they are copied to the re-crawl's list and base
//! without being read into requests.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Deserialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use super::record::{BASE, DELTA};
use super::{journal_error, StartsState};
use crate::error::Error;

/// A page record, as its JSON.
pub(super) type RawPage = Box<RawValue>;

/// An accepted request's id alone, the rest of its record skipped.
#[derive(Deserialize)]
struct IdOnly {
    id: Uuid,
}

/// An accepted request of a delta, its id alone.
#[derive(Deserialize)]
struct AddedId {
    ctx: IdOnly,
}

/// A page index change, the record kept as JSON (`PageUpdate`'s form).
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum RawUpdate {
    Seen(RawPage),
    Gone(String),
}

/// A delta record, as far as this reads it.
#[derive(Deserialize)]
struct DeltaIndex {
    added: Vec<AddedId>,
    done: Vec<Uuid>,
    #[serde(default)]
    pages: Vec<RawUpdate>,
    starts: StartsState,
}

/// A base record, as far as this reads it.
#[derive(Deserialize)]
struct BaseIndex {
    pending: Vec<IdOnly>,
    starts: StartsState,
    #[serde(default)]
    pages: Vec<RawPage>,
    #[serde(default)]
    generation: u32,
}

/// The URL a page record is keyed by, as written.
#[derive(Deserialize)]
struct UrlOf {
    request: UrlOnly,
}

#[derive(Deserialize)]
struct UrlOnly {
    url: String,
}

/// A finished crawl's page index.
pub(super) struct FinishedIndex {
    /// The page records, in URL order.
    pub pages: Vec<RawPage>,
    /// Re-crawls begun before.
    pub generation: u32,
}

/// The page index of a journal whose crawl finished (nothing pending, the
/// start requests exhausted); `None` when it has not finished.
pub(super) fn finished_index(
    records: &[Vec<u8>],
    path: &Path,
) -> Result<Option<FinishedIndex>, Error> {
    let unreadable = |i: usize, e: String| {
        let n = records.len();
        journal_error(
            path,
            format!("record {} of {n} cannot be read ({e})", i + 1),
        )
    };
    let key = |i: usize, raw: &RawValue| {
        serde_json::from_str::<UrlOf>(raw.get())
            .map(|u| u.request.url)
            .map_err(|e| unreadable(i, format!("a page record: {e}")))
    };
    let mut pending = HashSet::new();
    let mut pages: HashMap<String, RawPage> = HashMap::new();
    let (mut starts, mut generation) = (StartsState::default(), 0);
    for (i, r) in records.iter().enumerate() {
        match r.split_first() {
            Some((&DELTA, json)) => {
                let d: DeltaIndex =
                    serde_json::from_slice(json).map_err(|e| unreadable(i, e.to_string()))?;
                pending.extend(d.added.into_iter().map(|a| a.ctx.id));
                for id in d.done {
                    pending.remove(&id);
                }
                for update in d.pages {
                    match update {
                        RawUpdate::Seen(raw) => {
                            pages.insert(key(i, &raw)?, raw);
                        }
                        RawUpdate::Gone(url) => {
                            pages.remove(&url);
                        }
                    }
                }
                starts = d.starts;
            }
            Some((&BASE, rest)) => {
                let json = rest
                    .split_first_chunk::<8>()
                    .and_then(|(len, rest)| {
                        let len = usize::try_from(u64::from_le_bytes(*len)).ok()?;
                        rest.get(..len)
                    })
                    .ok_or_else(|| unreadable(i, "base record cut short".into()))?;
                let b: BaseIndex =
                    serde_json::from_slice(json).map_err(|e| unreadable(i, e.to_string()))?;
                pending = b.pending.into_iter().map(|p| p.id).collect();
                starts = b.starts;
                generation = b.generation;
                pages = HashMap::with_capacity(b.pages.len());
                for raw in b.pages {
                    pages.insert(key(i, &raw)?, raw);
                }
            }
            _ => return Err(unreadable(i, "unknown record type".into())),
        }
    }
    if !pending.is_empty() || !starts.exhausted {
        return Ok(None);
    }
    let mut pages: Vec<_> = pages.into_iter().collect();
    pages.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(FinishedIndex {
        pages: pages.into_iter().map(|(_, p)| p).collect(),
        generation,
    }))
}
