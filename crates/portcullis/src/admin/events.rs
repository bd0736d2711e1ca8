//! Server-sent events (<https://html.spec.whatwg.org/multipage/server-sent-events.html>):
//! `GET /api/approvals/events`, one `approval` event (id and the approval as JSON) whenever
//! an approval the caller may see changes, `: keep-alive` comments on idle streams, and
//! `lagged` when the caller fell behind the feed (it then lists again). The console's feed
//! is answered the same way ([`answer`]).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::approvals::{shown, visible};
use super::{AdminState, Caller};

/// A comment on idle event streams, so proxies keep them open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(super) async fn approvals(State(s): State<AdminState>, Caller(p): Caller) -> Response {
    let feed = s.gateway.approvals.subscribe();
    let hello = futures_util::stream::once(async {
        Ok::<_, Infallible>(Event::default().comment("portcullis approvals"))
    });
    // Ends when the client goes (the body, and this stream with it, is dropped).
    let changes = futures_util::stream::unfold((feed, s, p), |(mut feed, s, p)| async move {
        loop {
            let event = match feed.recv().await {
                Ok(a) if visible(&s.gateway, &p, &a) => Event::default()
                    .event("approval")
                    .id(&a.id)
                    .data(shown(&a, &p).to_string()),
                Ok(_) => continue,
                // Fell behind: say so; the client re-lists.
                Err(RecvError::Lagged(n)) => Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
                Err(RecvError::Closed) => return None,
            };
            return Some((Ok(event), (feed, s, p)));
        }
    });
    answer(hello.chain(changes), true)
}

/// An event stream's answer, never cached (by browsers or proxies); with `keep_alive`, a
/// `: keep-alive` comment after each `KEEP_ALIVE` without an event.
pub fn answer<S>(events: S, keep_alive: bool) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let sse = Sse::new(events);
    let sse = if keep_alive {
        sse.keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
            .into_response()
    } else {
        sse.into_response()
    };
    ([(http::header::CACHE_CONTROL, "no-store")], sse).into_response()
}
