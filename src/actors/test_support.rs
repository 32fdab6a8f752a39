//! Shared fakes for the actors' unit tests: a recorder that stands in for
//! any recipient, a test spider with one behaviour per callback, and small
//! builders.

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use actix::prelude::*;
use awc::http::header::HeaderMap;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::json;
use slog::Logger;
use tokio::sync::mpsc;
use url::Url;
use uuid::Uuid;

use crate::context::Context;
use crate::error::{Error, Stage};
use crate::messages::{
    ClosePipelines, Completed, Dispatch, Download, Enqueue, EnqueueSources, ForceStop, Idle, Parse,
    Pause, ProcessItems, Released, Report, RequestFailed, Requeue, Resume, Shutdown, Stop,
};
use crate::politeness::SlotReport;
use crate::request::Callback;
use crate::request::Request;
use crate::response::{Response, ResponseMeta};
use crate::spider::{Failure, Output, Spider, StartRequests};

/// How long [`Events::next`] waits before failing the test: a guard
/// against a hang, never a wait for work to happen.
const PATIENCE: Duration = Duration::from_secs(10);

/// A logger that drops everything.
pub(crate) fn log() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

/// The test spider's callbacks; each selects one behaviour of
/// [`TestSpider`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Cb {
    /// parse: two requests (`Detail(1)`, `Detail(2)`) and three items.
    #[default]
    Index,
    /// parse: one item `{"detail": id}`.
    Detail(u32),
    /// parse: one request, no item.
    Links,
    /// parse: nothing.
    Empty,
    /// parse: this many requests (`http://h/many/{i}`), no item.
    Many(u32),
    /// parse: a lazy source of this many requests
    /// (`http://h/lazy/{i}`) and one request, no item.
    Lazy(u32),
    /// parse: one request and one item, then an `Err`.
    Fails,
    /// parse: one request and one item, then a panic.
    Panics,
    /// on_error: a `dont_filter` retry of the failed request.
    Retry,
    /// on_error: a panic.
    ErrorPanics,
}

/// A GET request for `url`.
pub(crate) fn req(url: &str) -> Request<Cb> {
    Request::get(url).expect("a valid test URL")
}

/// A fresh context (no parent, attempt 0) for `url`.
pub(crate) fn ctx(url: &str) -> Context<Cb> {
    Context::new(req(url), None)
}

/// A 200 response from `url` with an empty body.
pub(crate) fn response(url: &str) -> Box<Response> {
    Box::new(Response {
        url: Url::parse(url).expect("a valid test URL"),
        status: 200,
        headers: HeaderMap::new(),
        body: Bytes::new(),
        meta: ResponseMeta::default(),
    })
}

/// What a failure looked like to [`Spider::on_error`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SeenFailure {
    pub(crate) url: String,
    pub(crate) kind: &'static str,
    pub(crate) stage: Stage,
    pub(crate) attempt: u32,
}

/// A spider whose behaviour is chosen by the request's [`Cb`]; it records
/// every callback value `parse` receives and every failure `on_error` sees.
#[derive(Default)]
pub(crate) struct TestSpider {
    pub(crate) parsed: Mutex<Vec<Cb>>,
    pub(crate) failures: Mutex<Vec<SeenFailure>>,
}

impl Spider for TestSpider {
    type Callback = Cb;

    fn name(&self) -> &str {
        "test"
    }

    fn start_requests(&self) -> StartRequests<Cb> {
        Box::new(std::iter::empty())
    }

    fn parse(&self, callback: Cb, _: &Response, out: &mut Output<Cb>) -> Result<(), Error> {
        self.parsed.lock().unwrap().push(callback.clone());
        match callback {
            Cb::Index => {
                out.request(req("http://h/detail/1").callback(Cb::Detail(1)));
                out.request(req("http://h/detail/2").callback(Cb::Detail(2)));
                for n in 1..=3 {
                    out.item(json!({ "n": n }));
                }
                out.count("test/indexes", 1);
            }
            Cb::Detail(id) => out.item(json!({ "detail": id })),
            Cb::Links => out.request(req("http://h/next")),
            Cb::Many(n) => {
                for i in 0..n {
                    out.request(req(&format!("http://h/many/{i}")));
                }
                assert_eq!(out.request_count(), n as usize);
            }
            Cb::Lazy(n) => {
                out.requests_from((0..n).map(|i| req(&format!("http://h/lazy/{i}"))));
                out.request(req("http://h/eager"));
                assert_eq!(out.request_count(), 1);
            }
            Cb::Empty | Cb::Retry | Cb::ErrorPanics => {}
            Cb::Fails => {
                out.request(req("http://h/before-the-error"));
                out.item(json!({ "partial": true }));
                out.count("test/before_the_error", 2);
                return Err(Error::custom(Stage::Parse, "bad page"));
            }
            Cb::Panics => {
                out.request(req("http://h/before-the-panic"));
                out.item(json!({ "partial": true }));
                panic!("parse exploded");
            }
        }
        Ok(())
    }

    fn on_error(&self, failure: &Failure<Cb>) -> Vec<Request<Cb>> {
        self.failures.lock().unwrap().push(SeenFailure {
            url: failure.request.url.to_string(),
            kind: failure.error.kind_name(),
            stage: failure.error.stage(),
            attempt: failure.attempt,
        });
        match failure.request.callback {
            Cb::Retry => vec![failure.request.clone().callback(Cb::Index).dont_filter()],
            Cb::ErrorPanics => panic!("on_error exploded"),
            _ => Vec::new(),
        }
    }
}

/// One message a [`Recorder`] received.
#[derive(Debug)]
pub(crate) enum Event<C> {
    Idle,
    Shutdown,
    ClosePipelines,
    Pause,
    Resume,
    Stop,
    Enqueue(Vec<Context<C>>),
    Sources(Vec<crate::spider::RequestSource<C>>),
    Requeue(Vec<Context<C>>),
    Completed(Uuid),
    Dispatch(Context<C>),
    Download {
        ctx: Context<C>,
        epoch: u64,
    },
    Parse {
        ctx: Context<C>,
        response: Box<Response>,
    },
    RequestFailed {
        ctx: Context<C>,
        error: Error,
    },
    ProcessItems(ProcessItems),
    Report(Report),
    Released(SlotReport),
    ForceStop,
}

impl<C> Event<C> {
    /// The variant's name, for compact assertions.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Event::Idle => "Idle",
            Event::Shutdown => "Shutdown",
            Event::ClosePipelines => "ClosePipelines",
            Event::Pause => "Pause",
            Event::Resume => "Resume",
            Event::Stop => "Stop",
            Event::Enqueue(_) => "Enqueue",
            Event::Sources(_) => "Sources",
            Event::Requeue(_) => "Requeue",
            Event::Completed(_) => "Completed",
            Event::Dispatch(_) => "Dispatch",
            Event::Download { .. } => "Download",
            Event::Parse { .. } => "Parse",
            Event::RequestFailed { .. } => "RequestFailed",
            Event::ProcessItems(_) => "ProcessItems",
            Event::Report(_) => "Report",
            Event::Released(_) => "Released",
            Event::ForceStop => "ForceStop",
        }
    }
}

/// The names of `events`, in order.
pub(crate) fn kinds<C>(events: &[Event<C>]) -> Vec<&'static str> {
    events.iter().map(Event::kind).collect()
}

/// Unwraps one variant of an [`Event`] or fails the test with what came
/// instead: `expect_event!(events.next().await, Event::Dispatch(c) => c)`.
macro_rules! expect_event {
    ($event:expr, $pat:pat => $out:expr) => {
        match $event {
            $pat => $out,
            other => panic!("expected {}, got {:?}", stringify!($pat), other),
        }
    };
}
pub(crate) use expect_event;

/// The receiving end of a [`Recorder`].
pub(crate) struct Events<C>(mpsc::UnboundedReceiver<Event<C>>);

impl<C: fmt::Debug> Events<C> {
    /// The next event, awaited (fails the test after [`PATIENCE`]).
    pub(crate) async fn next(&mut self) -> Event<C> {
        tokio::time::timeout(PATIENCE, self.0.recv())
            .await
            .unwrap_or_else(|_| panic!("no event within {PATIENCE:?}"))
            .expect("the recorder is gone")
    }

    /// Every event received so far. Call it after a round trip (`Ping`)
    /// through the recorder so that nothing sent before is still in its
    /// mailbox.
    pub(crate) fn drain(&mut self) -> Vec<Event<C>> {
        let mut out = Vec::new();
        while let Ok(e) = self.0.try_recv() {
            out.push(e);
        }
        out
    }
}

/// A no-op message whose answer proves every message sent to the actor
/// before it has been handled.
pub(crate) struct Ping;
impl Message for Ping {
    type Result = ();
}

/// A fake for any recipient: records every message it receives, in
/// mailbox order, into one channel (so one recorder standing in for the
/// Scheduler sees `Enqueue` and `Completed` in the order they were sent).
/// Control messages are answered `Ok(())`.
pub(crate) struct Recorder<C> {
    tx: mpsc::UnboundedSender<Event<C>>,
}

impl<C: Callback> Recorder<C> {
    /// Starts a recorder on the current arbiter.
    pub(crate) fn spawn() -> (Addr<Self>, Events<C>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Recorder { tx }.start(), Events(rx))
    }

    fn record(&self, event: Event<C>) {
        // The test may have dropped its receiver already; nothing to do then.
        let _ = self.tx.send(event);
    }
}

impl<C: Callback> Actor for Recorder<C> {
    type Context = actix::Context<Self>;
}

impl<C: Callback> Handler<Ping> for Recorder<C> {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Self::Context) {}
}

macro_rules! record {
    ($msg:ty, |$m:ident| $event:expr) => {
        impl<C: Callback> Handler<$msg> for Recorder<C> {
            type Result = ();
            fn handle(&mut self, $m: $msg, _: &mut Self::Context) {
                self.record($event);
            }
        }
    };
}

macro_rules! record_control {
    ($msg:ty, $event:expr) => {
        impl<C: Callback> Handler<$msg> for Recorder<C> {
            type Result = Result<(), Error>;
            fn handle(&mut self, _: $msg, _: &mut Self::Context) -> Self::Result {
                self.record($event);
                Ok(())
            }
        }
    };
}

record!(Idle, |_m| Event::Idle);
record!(Shutdown, |_m| Event::Shutdown);
record!(ClosePipelines, |_m| Event::ClosePipelines);
record!(Enqueue<C>, |m| Event::Enqueue(m.batch));
record!(EnqueueSources<C>, |m| Event::Sources(m.sources));
record!(Requeue<C>, |m| Event::Requeue(m.batch));
record!(Completed, |m| Event::Completed(m.id));
record!(Dispatch<C>, |m| Event::Dispatch(m.ctx));
record!(Download<C>, |m| Event::Download {
    ctx: m.ctx,
    epoch: m.epoch
});
record!(Parse<C>, |m| Event::Parse {
    ctx: m.ctx,
    response: m.response
});
record!(RequestFailed<C>, |m| Event::RequestFailed {
    ctx: m.ctx,
    error: m.error
});
record!(ProcessItems, |m| Event::ProcessItems(m));
record!(Report, |m| Event::Report(m));
record!(Released, |m| Event::Released(m.report));
record!(ForceStop, |_m| Event::ForceStop);
record_control!(Pause, Event::Pause);
record_control!(Resume, Event::Resume);
record_control!(Stop, Event::Stop);
