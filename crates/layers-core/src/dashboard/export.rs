//! The usage CSV: exactly the rows the filter selects, newest first, every text cell escaped
//! against formula injection (layers-domain's `csv`), streamed page by page.

use std::collections::HashMap;
use std::sync::Arc;

use futures_util::{Stream, StreamExt};
use layers_domain::dashboard::csv::{cell, line, number};
use layers_domain::{KeyId, UserId};
use layers_store::{Store, UsageCursor, UsageFilter, UsageRecord};
use time::format_description::well_known::Rfc3339;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{ServiceError, ServiceResult};

/// Most rows one export holds; a larger selection is refused with a request to narrow it.
pub const MAX_EXPORT_ROWS: i64 = 100_000;
const CHUNK: u32 = 1_000;

pub const HEADER: [&str; 18] = [
    "time_utc",
    "request_id",
    "key_name",
    "key_id",
    "model",
    "provider",
    "endpoint",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "latency_ms",
    "held_credits",
    "charged_credits",
    "released_credits",
    "cost_credits",
    "streamed",
];

/// The CSV, as a stream of chunks of at most [`CHUNK`] rows each, read one page at a time (the
/// export never holds more than a page in memory). Fails before the first byte when the
/// filter selects more than [`MAX_EXPORT_ROWS`].
pub(super) async fn csv(
    store: Arc<dyn Store>,
    user: UserId,
    filter: UsageFilter,
    names: HashMap<KeyId, String>,
    permit: OwnedSemaphorePermit,
) -> ServiceResult<impl Stream<Item = ServiceResult<String>> + Send + 'static> {
    let total = store.usage_summary(user, &filter).await?.total.requests;
    if total > MAX_EXPORT_ROWS {
        return Err(ServiceError::Invalid("the export is limited to 100,000 rows: narrow the date range"));
    }
    let header = line(&HEADER.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>());
    let first = futures_util::stream::once(async move { Ok(header) });
    // (cursor, finished): the next page starts after the cursor.
    let pages = futures_util::stream::try_unfold((None::<UsageCursor>, false), move |(cursor, finished)| {
        let (store, filter, names) = (store.clone(), filter.clone(), names.clone());
        async move {
            if finished {
                return Ok(None);
            }
            let rows = store.usage_page(user, &filter, CHUNK, cursor).await?;
            let next = rows.last().map(UsageCursor::after);
            let chunk: String = rows.iter().map(|r| line(&cells(r, &names))).collect();
            Ok(Some((chunk, (next, rows.len() < CHUNK as usize))))
        }
    });
    // The permit lives as long as the stream: exports at once on a node are bounded.
    Ok(first.chain(pages).map(move |chunk| {
        let _held = &permit;
        chunk
    }))
}

fn cells(r: &UsageRecord, names: &HashMap<KeyId, String>) -> Vec<String> {
    let name = r.key_id.and_then(|k| names.get(&k)).map_or("(deleted key)", String::as_str);
    let released = r.held.saturating_sub(r.charged).max(layers_domain::MicroCredits::ZERO);
    vec![
        cell(&r.created_at.format(&Rfc3339).unwrap_or_default()),
        cell(&r.request_id),
        cell(name),
        cell(&r.key_id.map(|k| k.to_string()).unwrap_or_default()),
        cell(&r.model),
        cell(&r.provider),
        cell(&r.endpoint),
        number(&r.status.to_string()),
        number(&r.usage.prompt_tokens.to_string()),
        number(&r.usage.completion_tokens.to_string()),
        number(&r.usage.cached_tokens.to_string()),
        number(&r.usage.reasoning_tokens.to_string()),
        number(&r.latency_ms.to_string()),
        number(&r.held.credits_text()),
        number(&r.charged.credits_text()),
        number(&released.credits_text()),
        number(&r.cost.credits_text()),
        cell(if r.streamed { "true" } else { "false" }),
    ]
}
