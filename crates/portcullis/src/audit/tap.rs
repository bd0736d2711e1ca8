//! Recording an answer as it streams to the agent. The tap keeps the first `cap` bytes and
//! a digest of all of them, and holds back one frame: when Azure's answer ends, the response
//! record is committed before that last frame goes out, so no agent holds a complete answer
//! whose record is not stored. If the commit fails, the answer is cut off (fail closed). If
//! the agent goes away mid-answer, the record is still written, saying so.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use super::record::AuditRecord;
use super::writer::Recorder;
use crate::upstream::client::{Body, BoxError};

/// Turns the captured (masked) bytes into what the store may hold; `complete` says whether
/// they are the whole body. `None` keeps only the digest.
pub type Render = Box<dyn FnOnce(&[u8], bool) -> Option<String> + Send + Sync>;

pub struct Pending {
    pub record: AuditRecord,
    pub recorder: Recorder,
    pub started: Instant,
    pub cap: usize,
    pub render: Render,
    /// `audit.on_failure: fail_open`: an answer whose record cannot be committed still goes
    /// out (loudly).
    pub fail_open: bool,
}

enum State {
    Streaming,
    Committing(JoinHandle<Result<(), String>>),
    Draining,
    Done,
}

pub struct Tap {
    inner: Body,
    held: Option<Frame<Bytes>>,
    captured: Vec<u8>,
    hasher: Sha256,
    total: u64,
    state: State,
    fail_open: bool,
    failure: Option<BoxError>,
    pending: Option<Pending>,
    /// The request's log span: the answer streams after the handler has returned.
    span: tracing::Span,
}

impl Tap {
    pub fn new(inner: Body, pending: Pending) -> Tap {
        Tap {
            inner,
            held: None,
            captured: Vec::new(),
            hasher: Sha256::new(),
            total: 0,
            state: State::Streaming,
            fail_open: pending.fail_open,
            failure: None,
            span: tracing::Span::current(),
            pending: Some(pending),
        }
    }

    /// The record for what was seen so far.
    fn finish(&mut self, note: Option<String>) -> Option<(AuditRecord, Recorder)> {
        let p = self.pending.take()?;
        let mut record = p.record;
        let complete = self.total as usize <= p.cap;
        record.time = crate::audit_time();
        record.latency_ms = Some(p.started.elapsed().as_millis() as u64);
        record.body_bytes = Some(self.total);
        if self.total > 0 {
            record.body_digest = Some(super::chain::hex(&self.hasher.clone().finalize()));
            record.body = (p.render)(&self.captured, complete && note.is_none());
        }
        if let Some(note) = note {
            record.reason = Some(match record.reason.take() {
                Some(r) => format!("{r}; {note}"),
                None => note,
            });
        }
        Some((record, p.recorder))
    }

    fn commit(&mut self, note: Option<String>) {
        self.state = match self.finish(note) {
            Some((record, recorder)) => {
                State::Committing(tokio::spawn(async move { recorder.record(record).await }))
            }
            None => State::Draining,
        };
    }

    fn see(&mut self, data: &Bytes) {
        self.hasher.update(data);
        self.total += data.len() as u64;
        let cap = self.pending.as_ref().map_or(0, |p| p.cap);
        let room = cap.saturating_sub(self.captured.len());
        self.captured
            .extend_from_slice(&data[..room.min(data.len())]);
    }
}

impl http_body::Body for Tap {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let _span = this.span.clone().entered();
        loop {
            match &mut this.state {
                State::Streaming => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        if let Some(data) = frame.data_ref() {
                            let data = data.clone();
                            this.see(&data);
                        }
                        if let Some(previous) = this.held.replace(frame) {
                            return Poll::Ready(Some(Ok(previous)));
                        }
                    }
                    Some(Err(e)) => {
                        let note = format!("Azure's answer broke off: {e}");
                        this.failure = Some(e);
                        this.commit(Some(note));
                    }
                    None => this.commit(None),
                },
                State::Committing(handle) => {
                    let result = ready!(Pin::new(handle).poll(cx));
                    match result {
                        Ok(Ok(())) => this.state = State::Draining,
                        Ok(Err(e)) if this.fail_open => {
                            tracing::error!(error = %e, "AUDIT RECORD LOST: the answer goes out anyway because audit.on_failure is fail_open");
                            this.state = State::Draining;
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "the answer's audit record could not be committed; the answer is cut off");
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(format!(
                                "the audit store cannot commit: {e}"
                            )
                            .into())));
                        }
                        Err(e) => {
                            this.state = State::Done;
                            return Poll::Ready(Some(Err(
                                format!("the audit writer failed: {e}").into()
                            )));
                        }
                    }
                }
                State::Draining => {
                    if let Some(frame) = this.held.take() {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    this.state = State::Done;
                    if let Some(e) = this.failure.take() {
                        return Poll::Ready(Some(Err(e)));
                    }
                }
                State::Done => return Poll::Ready(None),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if self.pending.is_none() {
            return;
        }
        // The agent went away (or the answer was never read): the record is still written.
        let _span = self.span.clone().entered();
        let note = "the agent went away before the answer was complete".to_owned();
        if let Some((record, recorder)) = self.finish(Some(note))
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let span = self.span.clone();
            rt.spawn(tracing::Instrument::instrument(
                async move {
                    if let Err(e) = recorder.record(record).await {
                        tracing::error!(error = %e, "an unfinished answer could not be recorded");
                    }
                },
                span,
            ));
        }
    }
}
