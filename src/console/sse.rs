//! `/ui/events`: the overview as Server-Sent Events. Each stream follows the hub's watch
//! channel, so a thousand watchers cost the journal the same one read per second as one.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::stream;

use super::auth::Need;
use super::overview::OverviewView;
use super::Console;

/// How long a browser waits before reconnecting a dropped stream, ms.
const RECONNECT_MS: u64 = 2000;

/// The event stream.
pub async fn events(console: web::Data<Console>, req: HttpRequest) -> HttpResponse {
    if let Err(refused) = console.admit(&req, Need::Read) {
        return *refused;
    }
    let rx = console.hub.watch();
    let first = Bytes::from(format!("retry: {RECONNECT_MS}\n\n"));
    let updates = stream::unfold((rx, true), |(mut rx, first)| async move {
        // The current view goes out at once; after that, each new one.
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let view = rx.borrow_and_update().clone();
        Some((Ok::<_, actix_web::Error>(event(view)), (rx, false)))
    });
    let head = stream::once(async move { Ok::<_, actix_web::Error>(first) });
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(futures_util::StreamExt::chain(head, updates))
}

/// One SSE message: `overview` with the view as JSON, or a comment while the first read
/// is under way.
fn event(view: Option<Arc<OverviewView>>) -> Bytes {
    match view {
        Some(view) => {
            let json = serde_json::to_string(&*view).expect("the overview serializes");
            Bytes::from(format!("event: overview\ndata: {json}\n\n"))
        }
        None => Bytes::from_static(b": waiting for the first read\n\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_one_json_line_named_overview() {
        let view = OverviewView {
            read: 3,
            at: "2026-01-01T00:00:00Z".into(),
            batches: Vec::new(),
            totals: Default::default(),
            instances: Vec::new(),
        };
        let text = String::from_utf8(event(Some(Arc::new(view))).to_vec()).unwrap();
        assert!(text.starts_with("event: overview\ndata: {\"read\":3,"), "{text}");
        assert!(text.ends_with("\n\n") && text.matches('\n').count() == 3, "{text}");
    }
}
