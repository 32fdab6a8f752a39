//! The task service's JSON envelope: every answer of its HTTP API is
//! `{"status", "message", "data"}`, `status` 1 for a success and an error
//! code otherwise, `message` saying why. A convention of that service, not
//! of HTTP or of the crawler: the job (its task list) and the spiders (list
//! and detail pages) open envelopes here.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use spinneret::{Error, Response, Stage};

/// `{"status": 1, "data": …, "message": …}`.
#[derive(Deserialize)]
struct Envelope<T> {
    /// 1 for a success, the error code otherwise.
    status: i64,
    /// Why, for an error (`"bad_parameter: count …"`).
    message: Option<String>,
    /// What a success answers.
    data: Option<T>,
}

/// The `data` of the envelope a response holds, read in a spider's parse
/// callback: see [`open`]; the error names the response's URL.
pub fn data<T: DeserializeOwned>(response: &Response) -> Result<T, Error> {
    open(&response.body, Stage::Parse).map_err(|e| e.with_url(&response.url))
}

/// The `data` of the envelope `body`, read at `stage`.
///
/// Malformed JSON, or JSON of another shape, is `ErrorKind::Json` (the
/// `serde_json` error its source); another status (its message quoted) or
/// a success without `data` is `ErrorKind::Custom`.
pub fn open<T: DeserializeOwned>(body: &[u8], stage: Stage) -> Result<T, Error> {
    let envelope: Envelope<T> =
        serde_json::from_slice(body).map_err(|e| Error::from(e).at(stage))?;
    if envelope.status != 1 {
        return Err(Error::custom(
            stage,
            format!(
                "envelope status {} ({})",
                envelope.status,
                envelope.message.unwrap_or_default()
            ),
        ));
    }
    envelope
        .data
        .ok_or_else(|| Error::custom(stage, "envelope without data"))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;
    use spinneret::{ErrorKind, ResponseMeta};

    use super::*;

    fn response(body: &str) -> Response {
        Response {
            url: "http://h/crawler/crawl_dst/list".parse().unwrap(),
            status: 200,
            headers: Default::default(),
            body: body.to_string().into_bytes().into(),
            meta: ResponseMeta::default(),
        }
    }

    #[test]
    fn a_success_gives_its_data() {
        let ok = response(r#"{"status": 1, "message": "success", "data": [1, 2]}"#);
        assert_eq!(data::<Vec<u8>>(&ok).unwrap(), [1, 2]);
    }

    #[test]
    fn another_status_is_an_error_quoting_the_message_and_naming_the_url() {
        let refused = response(r#"{"status": 1005, "message": "bad_parameter: count"}"#);
        let e = data::<Value>(&refused).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Custom(m) if m == "envelope status 1005 (bad_parameter: count)"),
            "{e}"
        );
        assert_eq!(e.stage(), Stage::Parse);
        assert_eq!(e.url().unwrap().as_str(), "http://h/crawler/crawl_dst/list");
    }

    #[test]
    fn a_success_without_data_or_malformed_json_is_an_error() {
        let e = data::<Value>(&response(r#"{"status": 1}"#)).unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Custom(m) if m == "envelope without data"),
            "{e}"
        );
        let e = data::<Value>(&response("{oops")).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Json(_)), "{e}");
        assert_eq!(e.url().unwrap().as_str(), "http://h/crawler/crawl_dst/list");
        let e = open::<Vec<u8>>(br#"{"status": 1, "data": "text"}"#, Stage::Setup).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Json(_)), "{e}");
        assert_eq!(e.stage(), Stage::Setup);
    }
}
