//! How each kind of setting is written: as a typed value (a TOML file,
//! JSON) or as text (an environment variable, a `-s KEY=VALUE` pair), and
//! how it is shown again (serialised, or printed by `Debug`).
//!
//! Durations are human strings (`"250ms"`, `"30s"`, `"1m 30s"`, read by
//! `humantime`); byte sizes are whole numbers of bytes or strings with a
//! unit (`"64MiB"`, `"500KB"`: `KB` is 1,000 bytes, `KiB` 1,024; read by
//! `bytesize`); lists are arrays, or in text comma-separated
//! (`a.example,b.example`) or a TOML array (`["a.example"]`); choices are
//! lower-case names; switches are `true`/`false`, and in text also
//! `on`/`off`, `yes`/`no`, `1`/`0`.

use std::path::PathBuf;
use std::time::Duration;

use toml::Value;

use crate::builder::ThreadLayout;
use crate::dedupe::DupeMode;
use crate::http::tls::{TlsRoots, TlsVersion};
use crate::httpcache::CachePolicy;

/// A value as given.
#[derive(Clone, Copy)]
pub(super) enum Given<'a> {
    /// Typed: from a TOML file or deserialised data (JSON).
    Typed(&'a Value),
    /// Text: from an environment variable or a `KEY=VALUE` pair.
    Text(&'a str),
}

/// How values of type `T` are written, for one kind of setting.
pub(super) trait Format<T> {
    /// What a value should look like, for the error a wrong one gets.
    const EXPECTED: &'static str;

    /// A typed value, if it is one of these.
    fn typed(value: &Value) -> Option<T>;

    /// Text, if it reads as one of these.
    fn text(text: &str) -> Option<T>;

    /// The value as a TOML file would hold it.
    fn show(value: &T) -> Value;

    /// `given`, if it is one of these.
    fn read(given: Given<'_>) -> Option<T> {
        match given {
            Given::Typed(value) => Self::typed(value),
            Given::Text(text) => Self::text(text),
        }
    }
}

/// A count: a non-negative whole number (`_` may group digits).
pub(super) struct Whole;

impl<T: TryFrom<u64> + TryInto<u64> + Copy> Format<T> for Whole {
    const EXPECTED: &'static str = "a whole number";

    fn typed(value: &Value) -> Option<T> {
        let n = u64::try_from(value.as_integer()?).ok()?;
        T::try_from(n).ok()
    }

    fn text(text: &str) -> Option<T> {
        let n: u64 = text.trim().replace('_', "").parse().ok()?;
        T::try_from(n).ok()
    }

    fn show(value: &T) -> Value {
        let n: Option<u64> = (*value).try_into().ok();
        Value::Integer(n.and_then(|n| i64::try_from(n).ok()).unwrap_or(i64::MAX))
    }
}

/// A whole number that may be negative.
pub(super) struct Signed;

impl Format<i32> for Signed {
    const EXPECTED: &'static str = "a whole number (negative or not)";

    fn typed(value: &Value) -> Option<i32> {
        i32::try_from(value.as_integer()?).ok()
    }

    fn text(text: &str) -> Option<i32> {
        text.trim().parse().ok()
    }

    fn show(value: &i32) -> Value {
        Value::Integer(i64::from(*value))
    }
}

/// A number, fractional or not (a rate, a probability).
pub(super) struct Real;

impl Format<f64> for Real {
    const EXPECTED: &'static str = "a number";

    fn typed(value: &Value) -> Option<f64> {
        match value {
            Value::Float(x) => Some(*x),
            // Whole numbers of requests per second are written as such.
            Value::Integer(n) => Some(*n as f64),
            _ => None,
        }
    }

    fn text(text: &str) -> Option<f64> {
        text.trim().parse().ok()
    }

    fn show(value: &f64) -> Value {
        Value::Float(*value)
    }
}

/// A switch.
pub(super) struct Flag;

impl Format<bool> for Flag {
    const EXPECTED: &'static str = "true or false";

    fn typed(value: &Value) -> Option<bool> {
        value.as_bool()
    }

    fn text(text: &str) -> Option<bool> {
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => Some(true),
            "false" | "off" | "no" | "0" => Some(false),
            _ => None,
        }
    }

    fn show(value: &bool) -> Value {
        Value::Boolean(*value)
    }
}

/// A duration, as a human string.
pub(super) struct Human;

impl Format<Duration> for Human {
    const EXPECTED: &'static str = "a duration such as \"250ms\", \"30s\" or \"1m 30s\"";

    fn typed(value: &Value) -> Option<Duration> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<Duration> {
        humantime::parse_duration(text.trim()).ok()
    }

    fn show(value: &Duration) -> Value {
        Value::String(humantime::format_duration(*value).to_string())
    }
}

/// An interval that may be off (`"off"` or `false`), held as zero, which
/// the setter it feeds takes for off.
pub(super) struct Interval;

impl Format<Duration> for Interval {
    const EXPECTED: &'static str = "a duration such as \"60s\", or off";

    fn typed(value: &Value) -> Option<Duration> {
        match value {
            Value::Boolean(false) => Some(Duration::ZERO),
            Value::String(text) => Self::text(text),
            _ => None,
        }
    }

    fn text(text: &str) -> Option<Duration> {
        match text.trim() {
            "off" | "false" => Some(Duration::ZERO),
            other => Human::text(other),
        }
    }

    fn show(value: &Duration) -> Value {
        if value.is_zero() {
            Value::String("off".into())
        } else {
            Human::show(value)
        }
    }
}

/// A size in bytes: a whole number, or a string with a unit.
pub(super) struct Bytes;

impl<T: TryFrom<u64> + TryInto<u64> + Copy> Format<T> for Bytes {
    const EXPECTED: &'static str = "a size such as 1048576, \"64MiB\" or \"500KB\"";

    fn typed(value: &Value) -> Option<T> {
        match value {
            Value::String(text) => Self::text(text),
            other => <Whole as Format<T>>::typed(other),
        }
    }

    fn text(text: &str) -> Option<T> {
        let size: bytesize::ByteSize = text.trim().parse().ok()?;
        T::try_from(size.as_u64()).ok()
    }

    fn show(value: &T) -> Value {
        <Whole as Format<T>>::show(value)
    }
}

/// A count that must be at least 1 (a concurrency, a limit).
pub(super) struct Count;

impl<T: TryFrom<u64> + TryInto<u64> + Copy> Format<T> for Count {
    const EXPECTED: &'static str = "a whole number, at least 1";

    fn typed(value: &Value) -> Option<T> {
        at_least_one(<Whole as Format<T>>::typed(value)?)
    }

    fn text(text: &str) -> Option<T> {
        at_least_one(<Whole as Format<T>>::text(text)?)
    }

    fn show(value: &T) -> Value {
        <Whole as Format<T>>::show(value)
    }
}

/// `n` when it is at least 1.
fn at_least_one<T: TryInto<u64> + Copy>(n: T) -> Option<T> {
    let whole: Option<u64> = n.try_into().ok();
    whole.is_some_and(|w| w >= 1).then_some(n)
}

/// A size in bytes that must be positive (a memory threshold).
pub(super) struct SomeBytes;

impl Format<u64> for SomeBytes {
    const EXPECTED: &'static str = "a positive size such as 1048576, \"64MiB\" or \"500KB\"";

    fn typed(value: &Value) -> Option<u64> {
        <Bytes as Format<u64>>::typed(value).filter(|n| *n > 0)
    }

    fn text(text: &str) -> Option<u64> {
        <Bytes as Format<u64>>::text(text).filter(|n| *n > 0)
    }

    fn show(value: &u64) -> Value {
        <Bytes as Format<u64>>::show(value)
    }
}

/// A rate (per second, or a concurrency to aim at): a finite number
/// above 0.
pub(super) struct Rate;

impl Format<f64> for Rate {
    const EXPECTED: &'static str = "a positive number";

    fn typed(value: &Value) -> Option<f64> {
        Real::typed(value).filter(|x| x.is_finite() && *x > 0.0)
    }

    fn text(text: &str) -> Option<f64> {
        Real::text(text).filter(|x| x.is_finite() && *x > 0.0)
    }

    fn show(value: &f64) -> Value {
        Real::show(value)
    }
}

/// A probability strictly between 0 and 1.
pub(super) struct Fraction;

impl Format<f64> for Fraction {
    const EXPECTED: &'static str = "a number above 0 and below 1";

    fn typed(value: &Value) -> Option<f64> {
        Real::typed(value).filter(|x| *x > 0.0 && *x < 1.0)
    }

    fn text(text: &str) -> Option<f64> {
        Real::text(text).filter(|x| *x > 0.0 && *x < 1.0)
    }

    fn show(value: &f64) -> Value {
        Real::show(value)
    }
}

/// A duration that must be positive (an interval, a timeout).
pub(super) struct Positive;

impl Format<Duration> for Positive {
    const EXPECTED: &'static str = "a positive duration such as \"250ms\", \"30s\" or \"1m 30s\"";

    fn typed(value: &Value) -> Option<Duration> {
        Human::typed(value).filter(|d| !d.is_zero())
    }

    fn text(text: &str) -> Option<Duration> {
        Human::text(text).filter(|d| !d.is_zero())
    }

    fn show(value: &Duration) -> Value {
        Human::show(value)
    }
}

/// The shortest lease a distributed crawl's worker may hold its requests
/// for: shorter ones would expire between two renewals.
const MIN_LEASE: Duration = Duration::from_millis(300);

/// A Redis lease time: a duration of at least [`MIN_LEASE`].
pub(super) struct Lease;

impl Format<Duration> for Lease {
    const EXPECTED: &'static str = "a duration of at least 300ms";

    fn typed(value: &Value) -> Option<Duration> {
        Human::typed(value).filter(|d| *d >= MIN_LEASE)
    }

    fn text(text: &str) -> Option<Duration> {
        Human::text(text).filter(|d| *d >= MIN_LEASE)
    }

    fn show(value: &Duration) -> Value {
        Human::show(value)
    }
}

/// Text as given.
pub(super) struct Text;

impl Format<String> for Text {
    const EXPECTED: &'static str = "text";

    fn typed(value: &Value) -> Option<String> {
        value.as_str().map(str::to_string)
    }

    fn text(text: &str) -> Option<String> {
        Some(text.to_string())
    }

    fn show(value: &String) -> Value {
        Value::String(value.clone())
    }
}

/// A path; not empty.
pub(super) struct Path;

impl Format<PathBuf> for Path {
    const EXPECTED: &'static str = "a path";

    fn typed(value: &Value) -> Option<PathBuf> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<PathBuf> {
        (!text.is_empty()).then(|| PathBuf::from(text))
    }

    fn show(value: &PathBuf) -> Value {
        Value::String(value.to_string_lossy().into_owned())
    }
}

/// The items of a list written as text: a TOML array when it starts with
/// `[`, else comma-separated, each item trimmed, empty ones left out.
fn items(text: &str) -> Option<Vec<Value>> {
    let text = text.trim();
    if text.starts_with('[') {
        let mut table: toml::Table = toml::from_str(&format!("v = {text}")).ok()?;
        return match table.remove("v")? {
            Value::Array(items) => Some(items),
            _ => None,
        };
    }
    Some(
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Value::String(s.to_string()))
            .collect(),
    )
}

/// A list of text (domains, header names, addresses).
pub(super) struct List;

impl Format<Vec<String>> for List {
    const EXPECTED: &'static str =
        "a list such as [\"a.example\", \"b.example\"] (as text: a.example,b.example)";

    fn typed(value: &Value) -> Option<Vec<String>> {
        let items = value.as_array()?;
        items.iter().map(Text::typed).collect()
    }

    fn text(text: &str) -> Option<Vec<String>> {
        Self::typed(&Value::Array(items(text)?))
    }

    fn show(value: &Vec<String>) -> Value {
        Value::Array(value.iter().map(Text::show).collect())
    }
}

/// A list of paths.
pub(super) struct Paths;

impl Format<Vec<PathBuf>> for Paths {
    const EXPECTED: &'static str =
        "a list of paths such as [\"/data/a\", \"/data/b\"] (as text: /data/a,/data/b)";

    fn typed(value: &Value) -> Option<Vec<PathBuf>> {
        let items = value.as_array()?;
        items.iter().map(Path::typed).collect()
    }

    fn text(text: &str) -> Option<Vec<PathBuf>> {
        Self::typed(&Value::Array(items(text)?))
    }

    fn show(value: &Vec<PathBuf>) -> Value {
        Value::Array(value.iter().map(Path::show).collect())
    }
}

/// A list of HTTP status codes (100 to 999).
pub(super) struct Codes;

impl Format<Vec<u16>> for Codes {
    const EXPECTED: &'static str =
        "a list of HTTP status codes such as [503, 429] (as text: 503,429)";

    fn typed(value: &Value) -> Option<Vec<u16>> {
        let code = |v: &Value| {
            let n = u16::try_from(v.as_integer()?).ok()?;
            (100..=999).contains(&n).then_some(n)
        };
        value.as_array()?.iter().map(code).collect()
    }

    fn text(text: &str) -> Option<Vec<u16>> {
        let numbers = items(text)?
            .into_iter()
            .map(|v| match v {
                Value::String(s) => s.parse().ok().map(Value::Integer),
                other => Some(other),
            })
            .collect::<Option<Vec<_>>>()?;
        Self::typed(&Value::Array(numbers))
    }

    fn show(value: &Vec<u16>) -> Value {
        Value::Array(
            value
                .iter()
                .map(|c| Value::Integer(i64::from(*c)))
                .collect(),
        )
    }
}

/// One of a few named values, written in lower case (read in any case).
fn choose<T: Copy>(text: &str, names: &[(&str, T)]) -> Option<T> {
    let text = text.trim();
    names
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, v)| *v)
}

/// The name of `value` among `names`.
fn name_of<T: PartialEq>(value: &T, names: &[(&'static str, T)]) -> Value {
    let name = names
        .iter()
        .find(|(_, v)| v == value)
        .map_or("", |(n, _)| n);
    Value::String(name.to_string())
}

/// [`ThreadLayout`] by name.
pub(super) struct Layout;

/// The layouts' names.
const LAYOUTS: &[(&str, ThreadLayout)] = &[
    ("compact", ThreadLayout::Compact),
    ("single", ThreadLayout::Single),
    ("spread", ThreadLayout::Spread),
];

impl Format<ThreadLayout> for Layout {
    const EXPECTED: &'static str = "one of compact, single, spread";

    fn typed(value: &Value) -> Option<ThreadLayout> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<ThreadLayout> {
        choose(text, LAYOUTS)
    }

    fn show(value: &ThreadLayout) -> Value {
        name_of(value, LAYOUTS)
    }
}

/// [`DupeMode`] by name.
pub(super) struct Mode;

/// The modes' names.
const MODES: &[(&str, DupeMode)] = &[
    ("exact", DupeMode::Exact),
    ("probabilistic", DupeMode::Probabilistic),
];

impl Format<DupeMode> for Mode {
    const EXPECTED: &'static str = "one of exact, probabilistic";

    fn typed(value: &Value) -> Option<DupeMode> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<DupeMode> {
        choose(text, MODES)
    }

    fn show(value: &DupeMode) -> Value {
        name_of(value, MODES)
    }
}

/// [`CachePolicy`] by name.
pub(super) struct Policy;

/// The policies' names.
const POLICIES: &[(&str, CachePolicy)] = &[
    ("dummy", CachePolicy::Dummy),
    ("rfc9111", CachePolicy::Rfc9111),
];

impl Format<CachePolicy> for Policy {
    const EXPECTED: &'static str = "one of dummy, rfc9111";

    fn typed(value: &Value) -> Option<CachePolicy> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<CachePolicy> {
        choose(text, POLICIES)
    }

    fn show(value: &CachePolicy) -> Value {
        name_of(value, POLICIES)
    }
}

/// [`TlsRoots`] by name.
pub(super) struct Roots;

/// The root sets' names.
const ROOTS: &[(&str, TlsRoots)] = &[
    ("builtin", TlsRoots::Builtin),
    ("system", TlsRoots::System),
    ("both", TlsRoots::Both),
    ("extra", TlsRoots::Extra),
];

impl Format<TlsRoots> for Roots {
    const EXPECTED: &'static str = "one of builtin, system, both, extra";

    fn typed(value: &Value) -> Option<TlsRoots> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<TlsRoots> {
        choose(text, ROOTS)
    }

    fn show(value: &TlsRoots) -> Value {
        name_of(value, ROOTS)
    }
}

/// [`TlsVersion`] by its number.
pub(super) struct MinTls;

/// The versions' numbers.
const TLS_VERSIONS: &[(&str, TlsVersion)] =
    &[("1.2", TlsVersion::Tls12), ("1.3", TlsVersion::Tls13)];

impl Format<TlsVersion> for MinTls {
    const EXPECTED: &'static str = "\"1.2\" or \"1.3\"";

    fn typed(value: &Value) -> Option<TlsVersion> {
        Self::text(value.as_str()?)
    }

    fn text(text: &str) -> Option<TlsVersion> {
        choose(text, TLS_VERSIONS)
    }

    fn show(value: &TlsVersion) -> Value {
        name_of(value, TLS_VERSIONS)
    }
}
