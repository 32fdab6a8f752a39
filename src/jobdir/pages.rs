//! A re-crawl's list of the pages to revisit.
//!
//! When a re-crawl begins, the page index as it is then is written to
//! `recrawl-<generation>.jsonl` in the job directory (a first line
//! `{"pages": N, "deferred": M}`, then one JSON page record a line; a
//! temporary file, synced, then renamed), before the journal says the
//! re-crawl began. The first M pages are those a sitemap listed with a
//! `<lastmod>`, each line `{"fingerprint", "fetched", "page"}`: their
//! revisits wait for the sitemap; read when the re-crawl opens, they go to
//! the Scheduler as [`WaitingPage`]s, their records kept as JSON until
//! sent (most never are). The re-crawl reads the others lazily, a line at
//! a time, as its first start requests: they never sit whole in memory,
//! and the list does not change while the index does, so a re-crawl
//! stopped halfway resumes at the same place in it (the start-request
//! position counts its lines first).

use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Lines, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use slog::{error, Logger};

use super::journal_error;
use crate::error::Error;
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::recrawl::{listed, revisit, PageRecord};
use crate::request::{Callback, Request};
use crate::stats::Stats;
use serde_json::value::RawValue;

use crate::recrawl::LIST_UNREADABLE as UNREADABLE;

/// The list of re-crawl `generation` in `dir`.
pub(super) fn list_path(dir: &Path, generation: u32) -> PathBuf {
    dir.join(format!("recrawl-{generation}.jsonl"))
}

/// Writes the list of re-crawl `generation`, durably, and removes the
/// lists of earlier ones; with `hold`, the pages a sitemap listed with a
/// `<lastmod>` first, to wait for it.
pub(super) fn write_list<C: Callback>(
    dir: &Path,
    generation: u32,
    pages: &[super::index::RawPage],
    hold: bool,
) -> Result<PathBuf, Error> {
    let path = list_path(dir, generation);
    let tmp = dir.join(format!("recrawl-{generation}.jsonl.tmp"));
    let io = |e: std::io::Error| journal_error(&path, format!("writing the re-crawl list: {e}"));
    // Pages a sitemap listed with a `<lastmod>` first, with what their
    // revisits wait on (a record that cannot be read is revisited as any
    // other, where its line says so).
    let mut deferred = Vec::new();
    let mut eager = Vec::new();
    for page in pages {
        match waiting_line::<C>(page).filter(|_| hold) {
            Some(line) => deferred.push(line),
            None => eager.push(page),
        }
    }
    let mut out = BufWriter::new(File::create(&tmp).map_err(io)?);
    let header = Header {
        pages: pages.len() as u64,
        deferred: deferred.len() as u64,
    };
    let header = serde_json::to_string(&header).map_err(|e| io(e.into()))?;
    writeln!(out, "{header}").map_err(io)?;
    for line in deferred {
        serde_json::to_writer(&mut out, &line).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    for page in eager {
        // As written in the journal: JSON without line breaks.
        out.write_all(page.get().as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    fs::rename(&tmp, &path).map_err(io)?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    for earlier in 1..generation {
        let _ = fs::remove_file(list_path(dir, earlier));
    }
    Ok(path)
}

/// The line of `page` in the list's first part, if a sitemap listed it
/// with a `<lastmod>`. Most pages are not: a glance at the record's
/// `meta` (nothing else read into memory) rules them out before the whole
/// record is read.
fn waiting_line<C: Callback>(page: &RawValue) -> Option<WaitingLine<&RawValue>> {
    let glance = serde_json::from_str::<Glance>(page.get()).ok()?;
    glance.request.meta.sitemap_lastmod?;
    let record = serde_json::from_str::<PageRecord<C>>(page.get()).ok()?;
    listed(&record.request).then(|| WaitingLine {
        fingerprint: fingerprint(&record.request),
        fetched: record.seen.fetched,
        page,
    })
}

/// A page record seen only for whether its request's `meta` holds a
/// sitemap's `<lastmod>` (`SITEMAP_LASTMOD`).
#[derive(serde::Deserialize)]
struct Glance {
    request: GlanceRequest,
}

#[derive(serde::Deserialize)]
struct GlanceRequest {
    #[serde(default)]
    meta: GlanceMeta,
}

#[derive(serde::Deserialize, Default)]
struct GlanceMeta {
    #[serde(default)]
    sitemap_lastmod: Option<serde::de::IgnoredAny>,
}

/// The revisits of a re-crawl's list, read a line at a time.
pub(crate) struct KnownPages<C> {
    /// The list's lines.
    lines: Lines<BufReader<File>>,
    /// Where it is, for the log.
    path: PathBuf,
    /// Whether revisits carry the validators.
    conditional: bool,
    /// Counts lines that cannot be read.
    stats: Arc<Stats>,
    /// Says which.
    log: Logger,
    /// Pages the lazy part of the list holds.
    len: u64,
    /// The revisits that wait for their sitemap.
    deferred: Vec<WaitingPage>,
    _callback: PhantomData<fn() -> C>,
}

/// A line of the list's first part.
#[derive(serde::Serialize, serde::Deserialize)]
struct WaitingLine<P> {
    /// The page's request's fingerprint.
    fingerprint: Fingerprint,
    /// When the page was fetched (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fetched: Option<i64>,
    /// Its record.
    page: P,
}

/// A revisit that waits for its sitemap: what decides whether it is sent,
/// and its record as JSON, read only if it is.
pub(crate) struct WaitingPage {
    /// The page's request's fingerprint.
    pub(crate) fingerprint: Fingerprint,
    /// When the page was fetched (seconds since the epoch).
    pub(crate) fetched: Option<i64>,
    /// Its record.
    page: Box<RawValue>,
    /// Whether its revisit carries the validators.
    conditional: bool,
}

impl WaitingPage {
    /// The waiting page of `record` (its line as the list would hold it).
    #[cfg(test)]
    pub(crate) fn of<C: Callback>(record: &PageRecord<C>, conditional: bool) -> Self {
        let page = serde_json::value::to_raw_value(record).expect("a record serialises");
        WaitingPage {
            fingerprint: fingerprint(&record.request),
            fetched: record.seen.fetched,
            page,
            conditional,
        }
    }

    /// Its revisit; the error says why its record cannot be read.
    pub(crate) fn revisit<C: Callback>(&self) -> Result<Request<C>, serde_json::Error> {
        let page: PageRecord<C> = serde_json::from_str(self.page.get())?;
        Ok(revisit(page, self.conditional))
    }
}

/// The list's first line.
#[derive(serde::Serialize, serde::Deserialize)]
struct Header {
    /// Pages listed.
    pages: u64,
    /// Of those, the first ones, listed by a sitemap with a `<lastmod>`
    /// (none in lists written before they were told apart).
    #[serde(default)]
    deferred: u64,
}

impl<C: Callback> KnownPages<C> {
    /// Opens the list of re-crawl `generation` in `dir`: fails, naming the
    /// file, when it is missing (the job directory lost it). The revisits
    /// that wait for their sitemap (the list's first part, when the
    /// re-crawl began holding them) are read at once (`take_deferred`).
    pub(crate) fn open(
        dir: &Path,
        generation: u32,
        conditional: bool,
        stats: Arc<Stats>,
        log: Logger,
    ) -> Result<Self, Error> {
        let path = list_path(dir, generation);
        let unreadable = |e: String| {
            journal_error(
                &path,
                format!("the re-crawl's list of pages cannot be read: {e}"),
            )
        };
        let file = File::open(&path).map_err(|e| unreadable(e.to_string()))?;
        let mut lines = BufReader::new(file).lines();
        let first = lines.next().unwrap_or(Ok(String::new()));
        let header: Header = first
            .map_err(|e| e.to_string())
            .and_then(|line| serde_json::from_str(&line).map_err(|e| e.to_string()))
            .map_err(|e| unreadable(format!("its first line: {e}")))?;
        let mut list = KnownPages {
            lines,
            path,
            conditional,
            stats,
            log,
            len: header.pages - header.deferred.min(header.pages),
            deferred: Vec::new(),
            _callback: PhantomData,
        };
        // Read by line count, not by page: a damaged line is one of them.
        for _ in 0..header.deferred {
            match list.read(|line| serde_json::from_str::<WaitingLine<Box<RawValue>>>(line)) {
                Some(Some(w)) => list.deferred.push(WaitingPage {
                    fingerprint: w.fingerprint,
                    fetched: w.fetched,
                    page: w.page,
                    conditional,
                }),
                Some(None) => {}
                None => break,
            }
        }
        Ok(list)
    }

    /// Pages pulled from the list (as start requests).
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// The revisits that wait for their sitemap (none unless the re-crawl
    /// began holding them).
    pub(crate) fn take_deferred(&mut self) -> Vec<WaitingPage> {
        std::mem::take(&mut self.deferred)
    }

    /// The next line's revisit: `Some(None)` for a line that cannot be
    /// read (counted and logged), `None` at the end (or after a read
    /// error, which leaves nothing after it to trust).
    fn next_line(&mut self) -> Option<Option<Request<C>>> {
        let page = self.read(|line| serde_json::from_str::<PageRecord<C>>(line))?;
        Some(page.map(|page| revisit(page, self.conditional)))
    }

    /// The next line, read with `parse`: `Some(None)` for a line that
    /// cannot be (counted and logged), `None` at the end (or after a read
    /// error, which leaves nothing after it to trust).
    fn read<T>(
        &mut self,
        parse: impl FnOnce(&str) -> Result<T, serde_json::Error>,
    ) -> Option<Option<T>> {
        let line = match self.lines.next()? {
            Ok(line) => line,
            Err(e) => {
                self.stats.add_named(UNREADABLE, 1);
                error!(self.log, "re-crawl list: read failed; its remaining pages are not revisited";
                    "path" => %self.path.display(), "error" => %e);
                return None;
            }
        };
        match parse(&line) {
            Ok(page) => Some(Some(page)),
            Err(e) => {
                self.stats.add_named(UNREADABLE, 1);
                error!(self.log, "re-crawl list: a line cannot be read; that page is not revisited";
                    "path" => %self.path.display(), "error" => %e);
                Some(None)
            }
        }
    }
}

impl<C: Callback> Iterator for KnownPages<C> {
    type Item = Request<C>;

    fn next(&mut self) -> Option<Request<C>> {
        loop {
            if let Some(revisit) = self.next_line()? {
                return Some(revisit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::super::{BloomSizing, Delta, JobDir, Opened, StartsState};
    use super::*;
    use crate::actors::test_support::{log, req, Cb};
    use crate::context::Context;
    use crate::dedupe::DupeMode;
    use crate::fingerprint::fingerprint;
    use crate::recrawl::PageUpdate;
    use crate::request::KnownPage;
    use crate::sitemap::SITEMAP_LASTMOD;
    use crate::stats::StatsSnapshot;

    fn page(url: &str, etag: Option<&str>, digest: u64) -> PageRecord<Cb> {
        PageRecord {
            request: req(url),
            seen: KnownPage {
                etag: etag.map(str::to_string),
                digest,
                ..KnownPage::default()
            },
        }
    }

    fn sizing() -> Option<BloomSizing> {
        Some(BloomSizing {
            capacity: 1000,
            rate: 0.001,
            mode: DupeMode::Exact,
        })
    }

    fn delta(
        added: Vec<Context<Cb>>,
        done: Vec<Uuid>,
        pages: Vec<PageUpdate<Cb>>,
        exhausted: bool,
    ) -> Delta<Cb> {
        Delta {
            added: added.into_iter().map(|c| (c, true)).collect(),
            done,
            seen: Vec::new(),
            pages,
            starts: StartsState {
                pulled: 3,
                exhausted,
            },
            stats: StatsSnapshot::default(),
        }
    }

    #[test]
    fn the_page_index_survives_compaction_and_a_recrawl_begins_from_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctxs: Vec<_> = ["http://h/a", "http://h/b", "http://h/c"]
            .iter()
            .map(|u| Context::new(req(u), None))
            .collect();
        {
            let (mut store, _) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
            let seen = [("a", 1), ("b", 2), ("c", 3)]
                .iter()
                .map(|(p, d)| {
                    PageUpdate::Seen(Box::new(page(&format!("http://h/{p}"), Some("\"1\""), *d)))
                })
                .collect();
            let done = ctxs.iter().map(|c| c.id).collect();
            store.write(delta(ctxs.clone(), done, seen, false)).unwrap();
            // b is gone, a changed; then the log is compacted.
            store.compact_min = 1;
            let later = vec![
                PageUpdate::Gone(req("http://h/b").url),
                PageUpdate::Seen(Box::new(page("http://h/a", Some("\"2\""), 10))),
            ];
            let info = store
                .write(delta(Vec::new(), Vec::new(), later, true))
                .unwrap();
            assert!(info.compacted);
        }
        let want = vec![
            page("http://h/a", Some("\"2\""), 10),
            page("http://h/c", Some("\"1\""), 3),
        ];
        // The index of a finished crawl, read without its requests.
        let index = |dir: &Path| {
            let (journal, records) = crate::journal::Journal::open(dir).unwrap();
            super::super::index::finished_index(&records, journal.path())
                .unwrap()
                .map(|f| {
                    let pages: Vec<PageRecord<Cb>> = f
                        .pages
                        .iter()
                        .map(|raw| serde_json::from_str(raw.get()).unwrap())
                        .collect();
                    (pages, f.generation)
                })
        };
        assert_eq!(index(dir.path()), Some((want.clone(), 0)));
        {
            let (_, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
            let r = restored.unwrap();
            assert!(r.info.pending == 0 && r.info.starts_exhausted, "finished");
        }

        // A re-crawl begins: its list, then a base of a new crawl.
        let (store, opened) =
            JobDir::<Cb>::open_with(dir.path(), sizing(), log(), Some(true)).unwrap();
        assert!(matches!(
            opened,
            Opened::Recrawl {
                generation: 1,
                pages: 2
            }
        ));
        drop(store);
        assert_eq!(index(dir.path()), None, "a re-crawl that has not finished");
        let (mut store, restored) = JobDir::<Cb>::open(dir.path(), sizing(), log()).unwrap();
        let mut r = restored.unwrap();
        assert_eq!(r.generation, 1);
        assert_eq!(
            (r.info.pending, r.info.completed, r.info.starts_pulled),
            (0, 0, 0)
        );
        assert!(!r.info.starts_exhausted, "a new crawl's start requests");
        assert!(
            r.bloom
                .as_mut()
                .unwrap()
                .insert_new(fingerprint(&ctxs[0].request)),
            "the dupe store starts empty"
        );

        // Finished with nothing revisited, the index is the one it began with.
        store
            .write(delta(Vec::new(), Vec::new(), Vec::new(), true))
            .unwrap();
        drop(store);
        assert_eq!(index(dir.path()), Some((want.clone(), 1)));

        let stats = Arc::new(Stats::default());
        let open = |conditional| {
            KnownPages::<Cb>::open(dir.path(), 1, conditional, stats.clone(), log()).unwrap()
        };
        assert_eq!(open(true).len(), 2);
        let revisits: Vec<_> = open(true).collect();
        let urls: Vec<_> = revisits.iter().map(|r| r.url.as_str()).collect();
        assert_eq!(urls, ["http://h/a", "http://h/c"]);
        let known = revisits[0].known.as_deref().unwrap();
        assert_eq!((known.etag.as_deref(), known.digest), (Some("\"2\""), 10));
        assert!(known.conditional);
        assert!(open(false).all(|r| !r.known.unwrap().conditional));

        // A damaged line is counted and skipped; the rest are revisited.
        let path = list_path(dir.path(), 1);
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, rest) = text.split_once('\n').unwrap();
        assert_eq!(header, "{\"pages\":2,\"deferred\":0}");
        std::fs::write(&path, format!("{header}\n{{\"request\": 1}}\n{rest}")).unwrap();
        assert_eq!(open(true).count(), 2);
        assert_eq!(stats.snapshot().get(UNREADABLE), 1);

        // A page a sitemap listed with a `<lastmod>` goes first and waits,
        // its record unread; without deferral it is revisited first.
        let mut listed = page("http://h/l", Some("\"1\""), 7);
        listed.request = listed.request.meta(SITEMAP_LASTMOD, "2024-05-01");
        listed.seen.fetched = Some(1_714_557_600);
        let raw: Vec<_> = [listed.clone(), want[0].clone()]
            .iter()
            .map(|p| serde_json::value::to_raw_value(p).unwrap())
            .collect();
        write_list::<Cb>(dir.path(), 1, &raw, true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("{\"pages\":2,\"deferred\":1}\n{\"fingerprint\":"),
            "{text}"
        );
        let mut list = open(true);
        assert_eq!(list.len(), 1, "one pulled as a start request");
        let waiting = list.take_deferred();
        assert_eq!(waiting.len(), 1);
        let w = &waiting[0];
        assert_eq!(w.fingerprint, fingerprint(&listed.request));
        assert_eq!(w.fetched, Some(1_714_557_600));
        let again: Request<Cb> = w.revisit().unwrap();
        assert_eq!(
            (again.url.as_str(), again.known.unwrap().digest),
            ("http://h/l", 7)
        );
        let urls: Vec<_> = list.map(|r| r.url.to_string()).collect();
        assert_eq!(urls, ["http://h/a"]);
        // A re-crawl that began without holding them lists them as any.
        write_list::<Cb>(dir.path(), 1, &raw, false).unwrap();
        let mut plain = open(true);
        assert_eq!((plain.len(), plain.take_deferred().len()), (2, 0));
        let urls: Vec<_> = plain.map(|r| r.url.to_string()).collect();
        assert_eq!(urls, ["http://h/l", "http://h/a"]);
    }
}
