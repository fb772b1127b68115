//! `GET /v3/sessions/`: the tenant application's sessions, newest first,
//! paginated as `{"count", "next", "previous", "results": [...]}`. The
//! import recovery lists the sessions a lost import may have created.

use std::time::SystemTime;

use serde::Deserialize;

use super::answer::read_answer;
use super::classify::Endpoint;
use super::failure::DiditError;
use super::transport::{CallContext, DiditClient};
use crate::tenant::ApiKey;

/// Largest page asked for (Didit's maximum).
const PAGE_SIZE: usize = 100;

/// The filters of a session listing.
#[derive(Clone, Debug, Default)]
pub struct SessionFilter {
    /// Exact `workflow_id`.
    pub workflow_id: String,
    /// Exact `vendor_data`; empty filters nothing.
    pub vendor_data: String,
    /// Sessions created at or after this instant (whole seconds).
    pub created_from: Option<SystemTime>,
}

/// One row of a listing.
#[derive(Clone, Debug, Deserialize)]
pub struct SessionRow {
    /// The session's id.
    pub session_id: String,
    /// `created_at` as Didit spelled it.
    #[serde(default)]
    pub created_at: Option<String>,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    next: Option<String>,
    results: Vec<SessionRow>,
}

impl DiditClient {
    /// `GET /v3/sessions/` with `filter`, at most `max_rows` rows (newest
    /// first), following `offset` pages.
    pub async fn list_sessions(
        &self,
        key: &ApiKey,
        filter: &SessionFilter,
        max_rows: usize,
        ctx: &CallContext,
    ) -> Result<Vec<SessionRow>, DiditError> {
        let mut rows = Vec::new();
        let mut query = vec![
            ("session_kind", "all".to_owned()),
            ("workflow_id", filter.workflow_id.clone()),
        ];
        if !filter.vendor_data.is_empty() {
            query.push(("vendor_data", filter.vendor_data.clone()));
        }
        if let Some(from) = filter.created_from {
            query.push((
                "date_from",
                humantime::format_rfc3339_seconds(from).to_string(),
            ));
        }
        query.push(("limit", PAGE_SIZE.to_string()));
        loop {
            let mut url = reqwest::Url::parse("http://x/v3/sessions/")
                .map_err(|e| super::answer::protocol(0, format!("list url: {e}")))?;
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())))
                .append_pair("offset", &rows.len().to_string());
            let path = match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_owned(),
            };
            let (status, raw) = self.get(Endpoint::List, &path, key, ctx).await?;
            let page: Page = read_answer(Endpoint::List, status, &raw)?;
            let empty = page.results.is_empty();
            rows.extend(page.results);
            if empty || page.next.is_none() || rows.len() >= max_rows {
                rows.truncate(max_rows);
                return Ok(rows);
            }
        }
    }
}
