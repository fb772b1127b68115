//! Finding an import again whose answer was lost. The in-doubt mark says
//! what was sent and when; Didit's session list (filtered by workflow,
//! vendor_data and date) gives the candidates, and each one's decision
//! says which original it was shared from. A session shared from the
//! token's source session, created at or after the send, is the one.

use std::time::{Duration, SystemTime};

use uuid::Uuid;

use crate::didit::{CallContext, DiditClient, DiditError, SessionFilter};
use crate::session::ImportedSession;
use crate::state::InDoubt;
use crate::tenant::ApiKey;

/// How far before the send the list looks (clock skew between the
/// gateway and Didit; the decision's `created_at` is checked again).
const CLOCK_SKEW: Duration = Duration::from_secs(120);

/// Most candidates read (newest first).
const MAX_CANDIDATES: usize = 50;

/// The session the lost import described by `mark` created, if Didit has it.
pub(super) async fn find_imported(
    client: &DiditClient,
    key: &ApiKey,
    mark: &InDoubt,
    ctx: &CallContext,
) -> Result<Option<ImportedSession>, DiditError> {
    if mark.source_session_id.is_empty() {
        return Ok(None);
    }
    let filter = SessionFilter {
        workflow_id: mark.workflow_id.clone(),
        vendor_data: mark.vendor_data.clone(),
        created_from: Some(mark.sent_at.checked_sub(CLOCK_SKEW).unwrap_or(mark.sent_at)),
    };
    let rows = client
        .list_sessions(key, &filter, MAX_CANDIDATES, ctx)
        .await?;
    let not_before = whole_seconds(mark.sent_at);
    for row in rows {
        if row
            .created_at
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|at| at < not_before.checked_sub(CLOCK_SKEW).unwrap_or(not_before))
        {
            continue;
        }
        let Ok(id) = Uuid::parse_str(&row.session_id) else {
            continue;
        };
        let decision = match client.decision(key, id, ctx).await {
            Ok(decision) => decision,
            // Deleted between the list and the read: not ours any more.
            Err(DiditError::Rejected { .. }) => continue,
            Err(err) => return Err(err),
        };
        let same_source = decision.shared_from_session.as_deref() == Some(&mark.source_session_id);
        let after_send = decision
            .created_at
            .as_deref()
            .and_then(parse_time)
            .is_none_or(|at| at >= not_before);
        if same_source && after_send {
            return Ok(Some(decision.session));
        }
    }
    Ok(None)
}

/// `at` rounded down to whole seconds (Didit's lists compare seconds).
fn whole_seconds(at: SystemTime) -> SystemTime {
    let secs = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

/// An RFC 3339 time as Didit writes it (`Z` or an offset, fractions
/// optional), whole seconds.
fn parse_time(raw: &str) -> Option<SystemTime> {
    let raw = raw.trim();
    let (main, offset_secs) = match raw.strip_suffix('Z').or_else(|| raw.strip_suffix('z')) {
        Some(main) => (main, 0i64),
        None => {
            // A trailing ±HH:MM after the time part.
            let split = raw.len().checked_sub(6)?;
            let (main, tz) = raw.split_at(split);
            let sign = match tz.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return humantime::parse_rfc3339_weak(raw).ok().map(whole_seconds),
            };
            let hours: i64 = tz.get(1..3)?.parse().ok()?;
            let minutes: i64 = tz.get(4..6)?.parse().ok()?;
            (main, sign * (hours * 3600 + minutes * 60))
        }
    };
    let main = main.split('.').next()?;
    let utc = humantime::parse_rfc3339_weak(main).ok()?;
    let shifted = if offset_secs >= 0 {
        utc.checked_sub(Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        utc.checked_add(Duration::from_secs(offset_secs.unsigned_abs()))
    };
    shifted.map(whole_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn didit_times_parse_in_every_spelling() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_736_935_200);
        for raw in [
            "2025-01-15T10:00:00Z",
            "2025-01-15T10:00:00.123456Z",
            "2025-01-15T10:00:00+00:00",
            "2025-01-15T12:00:00+02:00",
            "2025-01-15T08:30:00.5-01:30",
            "2025-01-15 10:00:00",
        ] {
            assert_eq!(parse_time(raw), Some(at), "{raw}");
        }
        assert_eq!(parse_time("yesterday"), None);
    }
}
