//! The v3 reads: `GET /v3/sessions/` (the calling application's sessions,
//! filtered, newest first, paginated like Django REST Framework's
//! `LimitOffsetPagination`) and `GET /v3/session/{id}/decision/` (one
//! session's decision body). Any key of the application may read; reads
//! go through the same pipeline as the writes (counted, faults, the read
//! limit) and take no body.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use uuid::Uuid;

use super::api::{call, json_response};
use super::api_error::{ApiError, Endpoint, FieldErrors};
use super::model::SessionKind;
use super::router::Shared;
use super::session::Session;
use super::store::Grant;

/// Rows per page when `limit` is absent or not a positive integer.
pub(crate) const DEFAULT_LIMIT: usize = 50;
/// The largest page; a bigger `limit` is cut down to it.
pub(crate) const MAX_LIMIT: usize = 100;
const DAY_MS: i64 = 86_400_000;

pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v3/sessions/", get(list))
        .route("/v3/session/{id}/decision/", get(decision))
        // Django's APPEND_SLASH: a GET without the trailing slash is a 301.
        .route("/v3/sessions", get(append_slash))
        .route("/v3/session/{id}/decision", get(append_slash))
}

/// 301 to the same path with a trailing slash, query kept.
async fn append_slash(uri: Uri) -> Response {
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let location = format!("{}/{query}", uri.path());
    match HeaderValue::from_str(&location) {
        Ok(location) => {
            let mut response = StatusCode::MOVED_PERMANENTLY.into_response();
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

type Params = Vec<(String, String)>;

async fn list(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Django reads what it can of a malformed query; so do we.
    let params: Params = query
        .and_then(|q| serde_urlencoded::from_str(&q).ok())
        .unwrap_or_default();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    call(&s, Endpoint::List, &headers, None, move |s, grant, _| {
        list_sessions(s, grant, &params, &host)
    })
    .await
}

async fn decision(
    State(s): State<Arc<Shared>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let id = path.ok().and_then(|Path(id)| Uuid::parse_str(&id).ok());
    call(
        &s,
        Endpoint::Decision,
        &headers,
        None,
        move |s, grant, _| {
            let session = id
                .and_then(|id| s.store.session(id))
                .filter(|session| session.application_id == grant.application_id)
                .ok_or(ApiError::NotFound)?;
            Ok(json_response(StatusCode::OK, session.render()))
        },
    )
    .await
}

/// The filters of one list call, validated.
#[derive(Debug, Default, PartialEq)]
struct Filter {
    kind: Option<SessionKind>,
    vendor_data: Option<String>,
    workflow_id: Option<String>,
    status: Option<String>,
    /// Inclusive bounds on `created_at`, Unix ms.
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    limit: usize,
    offset: usize,
}

impl Filter {
    /// Reads the query like Django does: the last value of a repeated
    /// parameter wins, empty values filter nothing, unknown parameters are
    /// ignored; `limit`/`offset` that are not non-negative integers fall
    /// back to their defaults.
    fn parse(params: &[(String, String)]) -> Result<Filter, ApiError> {
        let value = |name: &str| {
            params
                .iter()
                .rev()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        let mut errors = FieldErrors::new();
        let mut reject = |name: &str, message: String| {
            errors.insert(name.to_owned(), vec![message]);
        };
        let kind = match value("session_kind") {
            None | Some("all") => None,
            Some(v) => SessionKind::parse(v).or_else(|| {
                let message =
                    format!("Select a valid choice. {v} is not one of the available choices.");
                reject("session_kind", message);
                None
            }),
        };
        let mut date = |name: &str, end_of_day: bool| {
            let v = value(name)?;
            parse_instant(v, end_of_day).or_else(|| {
                reject(name, "Enter a valid date.".to_owned());
                None
            })
        };
        let from_ms = date("date_from", false);
        let to_ms = date("date_to", true);
        let number = |name: &str| value(name).and_then(|v| v.parse::<usize>().ok());
        let filter = Filter {
            kind,
            vendor_data: value("vendor_data").map(str::to_owned),
            workflow_id: value("workflow_id").map(str::to_owned),
            status: value("status").map(str::to_owned),
            from_ms,
            to_ms,
            limit: number("limit")
                .filter(|&l| l > 0)
                .map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT)),
            offset: number("offset").unwrap_or(0),
        };
        if errors.is_empty() {
            Ok(filter)
        } else {
            Err(ApiError::Fields(errors))
        }
    }

    /// Dates compare with `created_at` as listed (whole seconds).
    fn matches(&self, session: &Session) -> bool {
        let created = session.created_at_ms - session.created_at_ms.rem_euclid(1000);
        self.kind.is_none_or(|k| k == session.kind)
            && self
                .vendor_data
                .as_deref()
                .is_none_or(|v| session.vendor_data() == Some(v))
            && self
                .workflow_id
                .as_deref()
                .is_none_or(|w| session.workflow_id == w)
            && self
                .status
                .as_deref()
                .is_none_or(|st| session.status_label() == st)
            && self.from_ms.is_none_or(|t| created >= t)
            && self.to_ms.is_none_or(|t| created <= t)
    }
}

fn list_sessions(
    s: &Shared,
    grant: Grant,
    params: &[(String, String)],
    host: &str,
) -> Result<Response, ApiError> {
    let filter = Filter::parse(params)?;
    let mut sessions: Vec<Arc<Session>> = s
        .store
        .sessions_of(grant.application_id)
        .into_iter()
        .filter(|session| filter.matches(session))
        .collect();
    sessions.sort_by_key(|s| std::cmp::Reverse((s.created_at_ms, s.seq)));
    let count = sessions.len();
    let page = sessions.iter().skip(filter.offset).take(filter.limit);
    let results: Vec<_> = page.map(|session| session.row()).collect();
    let link = |offset: Option<usize>| page_url(host, params, filter.limit, offset);
    let next = (filter.offset.saturating_add(filter.limit) < count)
        .then(|| link(Some(filter.offset + filter.limit)));
    let previous = (filter.offset > 0).then(|| {
        let back = filter.offset.saturating_sub(filter.limit);
        link((back > 0).then_some(back))
    });
    let body = json!({ "count": count, "next": next, "previous": previous, "results": results });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// The absolute URL of another page: the same query with `limit` and
/// `offset` replaced (`offset` left out for the first page, as DRF does).
fn page_url(
    host: &str,
    params: &[(String, String)],
    limit: usize,
    offset: Option<usize>,
) -> String {
    let mut query: Params = params
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset")
        .cloned()
        .collect();
    query.push(("limit".to_owned(), limit.to_string()));
    if let Some(offset) = offset {
        query.push(("offset".to_owned(), offset.to_string()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    format!("http://{host}/v3/sessions/?{query}")
}

/// `YYYY-MM-DD` (the whole UTC day: its first ms, or with `end_of_day` its
/// last) or an ISO 8601 date-time (`T` or a space, seconds and fraction
/// optional, `Z`, `+HH:MM`/`-HH:MM` or no offset = UTC), as Unix ms.
fn parse_instant(text: &str, end_of_day: bool) -> Option<i64> {
    let is_date = |d: &str| {
        d.len() == 10
            && d.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            })
    };
    if is_date(text) {
        let start = utc_ms(&format!("{text}T00:00:00Z"))?;
        return Some(if end_of_day {
            start + DAY_MS - 1
        } else {
            start
        });
    }
    if !text.is_ascii() || !is_date(text.get(..10)?) {
        return None;
    }
    let (local, offset_ms) = split_offset(text)?;
    let local = if local.len() == 16 {
        format!("{local}:00")
    } else {
        local.to_owned()
    };
    utc_ms(&local)?.checked_sub(offset_ms)
}

/// Splits a trailing `Z`, `+HH:MM` or `-HH:MM` off; the offset in ms.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix('Z') {
        return Some((local, 0));
    }
    let tail = text.get(text.len().checked_sub(6)?..)?;
    let sign = match tail.as_bytes().first() {
        Some(b'+') => 1,
        Some(b'-') if text.len() > 16 => -1,
        _ => return Some((text, 0)),
    };
    let (hours, minutes) = tail.get(1..)?.split_once(':')?;
    let hours: i64 = hours.parse().ok().filter(|h| *h < 24)?;
    let minutes: i64 = minutes.parse().ok().filter(|m| *m < 60)?;
    let local = text.get(..text.len() - 6)?;
    Some((local, sign * (hours * 60 + minutes) * 60_000))
}

fn utc_ms(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn instants_dates_and_offsets() {
        let day = 1_736_899_200_000; // 2025-01-15T00:00:00Z
        assert_eq!(parse_instant("2025-01-15", false), Some(day));
        assert_eq!(parse_instant("2025-01-15", true), Some(day + DAY_MS - 1));
        let ten = day + 10 * 3_600_000;
        assert_eq!(parse_instant("2025-01-15T10:00:00Z", false), Some(ten));
        assert_eq!(parse_instant("2025-01-15T10:00:00", false), Some(ten));
        assert_eq!(parse_instant("2025-01-15 10:00", false), Some(ten));
        assert_eq!(
            parse_instant("2025-01-15T10:00:00.250Z", false),
            Some(ten + 250)
        );
        assert_eq!(parse_instant("2025-01-15T12:00:00+02:00", false), Some(ten));
        assert_eq!(parse_instant("2025-01-15T08:30:00-01:30", false), Some(ten));
        for bad in [
            "",
            "yesterday",
            "2025-13-01",
            "2025-1-15",
            "2025-01-15T25:00:00Z",
            "2025-01-15T10:00:00+2",
        ] {
            assert_eq!(parse_instant(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn filter_reads_like_django() {
        let f = Filter::parse(&params(&[
            ("limit", "0"),
            ("offset", "x"),
            ("status", "Approved"),
            ("status", "Declined"),
            ("vendor_data", ""),
            ("session_kind", "all"),
            ("country", "ESP"),
        ]));
        let f = f.unwrap_or_default();
        assert_eq!((f.limit, f.offset), (DEFAULT_LIMIT, 0));
        assert_eq!(f.status.as_deref(), Some("Declined"));
        assert_eq!((f.vendor_data, f.kind), (None, None));
        let big = Filter::parse(&params(&[("limit", "1000")])).unwrap_or_default();
        assert_eq!(big.limit, MAX_LIMIT);
        let bad = Filter::parse(&params(&[("session_kind", "people"), ("date_to", "soon")]));
        let Err(ApiError::Fields(errors)) = bad else {
            panic!("expected field errors, got {bad:?}");
        };
        assert_eq!(
            errors.keys().collect::<Vec<_>>(),
            ["date_to", "session_kind"]
        );
    }

    #[test]
    fn page_urls_replace_limit_and_offset() {
        let p = params(&[("vendor_data", "a b&c"), ("offset", "5"), ("limit", "2")]);
        assert_eq!(
            page_url("h:1", &p, 2, Some(7)),
            "http://h:1/v3/sessions/?vendor_data=a+b%26c&limit=2&offset=7"
        );
        assert_eq!(
            page_url("h:1", &[], 50, None),
            "http://h:1/v3/sessions/?limit=50"
        );
    }
}
