//! The fast path: a JSON answer no catalog profile names streams through, chunk by chunk,
//! with only its strings looked at. A secret always lies inside one JSON string, so bytes
//! outside strings pass at once and each string is held only until it closes (and until the
//! next token says whether it was a key); a string that may hold a secret is checked by the
//! detectors, and the answer's own `nextLink` (a string value of the top-level object, where
//! Azure's paging puts it) is rewritten to the gateway; a `nextLink` deeper in the answer is
//! data (perhaps the agent's own, stored in a resource) and stays as it is. Memory is
//! bounded by the longest string, which is capped: a longer one fails the answer (closed).

use super::detect::{self, Detector};
use super::{Keying, MaskError, Masker, PLACEHOLDER_PREFIX, Plan};

/// Strings longer than this fail the answer rather than be held without bound.
pub const MAX_STRING: usize = 16 * 1024 * 1024;

/// Rewrites the top-level `nextLink` value (a URL), or leaves it.
pub type LinkRewrite = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

pub struct StreamMasker {
    masker: std::sync::Arc<Masker>,
    detectors: Vec<Detector>,
    /// The plan's: placeholders are tagged as the whole-body masker would tag them.
    keying: Keying,
    rewrite: Option<LinkRewrite>,
    in_string: bool,
    escape: bool,
    /// The open string, from its opening quote.
    open: Vec<u8>,
    /// A closed string not yet known to be a key or a value.
    held: Option<Vec<u8>>,
    /// The last key seen (decoded), to know a `nextLink` value.
    last_key: Option<String>,
    /// How deep in objects and arrays the scan is (outside strings): 1 is the top-level
    /// object's members.
    depth: usize,
    /// The depth the last key was read at.
    key_depth: usize,
    pub masked: usize,
    /// The kinds of secret masked so far (counted in the metrics when the answer ends).
    kinds: std::collections::BTreeSet<String>,
}

impl StreamMasker {
    pub fn new(masker: std::sync::Arc<Masker>, plan: &Plan, rewrite: Option<LinkRewrite>) -> Self {
        StreamMasker {
            masker,
            detectors: plan.detectors.clone(),
            keying: plan.keying,
            rewrite,
            in_string: false,
            escape: false,
            open: Vec::new(),
            held: None,
            last_key: None,
            depth: 0,
            key_depth: 0,
            masked: 0,
            kinds: Default::default(),
        }
    }

    /// A reader that masks nothing and only rewrites the answer's own `nextLink` (for an
    /// answer already masked whole).
    pub fn links_only(masker: std::sync::Arc<Masker>, rewrite: LinkRewrite) -> Self {
        let nothing = Plan {
            profiles: Vec::new(),
            detectors: Vec::new(),
            inner: None,
            keying: Keying::answer(None),
        };
        Self::new(masker, &nothing, Some(rewrite))
    }

    /// Feeds a chunk; appends to `out` what may be sent now.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), MaskError> {
        let mut from = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                } else if b == b'\\' {
                    self.escape = true;
                } else if b == b'"' {
                    self.open.extend_from_slice(&chunk[from..=i]);
                    from = i + 1;
                    self.in_string = false;
                    self.held = Some(std::mem::take(&mut self.open));
                }
                continue;
            }
            if b.is_ascii_whitespace() {
                continue;
            }
            // The first token after a string says whether it was a key.
            if let Some(s) = self.held.take() {
                // The held string first, then the whitespace of this chunk that followed it.
                if b == b':' {
                    self.last_key = serde_json::from_slice(s.trim_ascii_end()).ok();
                    self.key_depth = self.depth;
                    out.extend_from_slice(&s);
                } else {
                    self.value(s, out)?;
                }
                out.extend_from_slice(&chunk[from..i]);
                from = i;
            }
            match b {
                b'"' => {
                    out.extend_from_slice(&chunk[from..i]);
                    from = i;
                    self.in_string = true;
                }
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => self.depth = self.depth.saturating_sub(1),
                _ => {}
            }
        }
        if self.in_string {
            self.open.extend_from_slice(&chunk[from..]);
            if self.open.len() > MAX_STRING {
                return Err(MaskError::NotJson(
                    "a string in the answer is too long to check".into(),
                ));
            }
        } else if self.held.is_none() {
            out.extend_from_slice(&chunk[from..]);
        } else {
            // Whitespace after a held string: keep it behind the string.
            let tail = &chunk[from..];
            if let Some(s) = self.held.as_mut() {
                s.extend_from_slice(tail);
            }
        }
        Ok(())
    }

    /// The answer has ended; appends what is left.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), MaskError> {
        if self.in_string {
            return Err(MaskError::NotJson("the answer ends inside a string".into()));
        }
        if let Some(s) = self.held.take() {
            self.value(s, out)?;
        }
        if self.masked > 0 {
            crate::metrics::METRICS.masked(self.masked, self.kinds.iter().map(String::as_str));
        }
        Ok(())
    }

    /// A closed value string (with any whitespace that followed it).
    fn value(&mut self, held: Vec<u8>, out: &mut Vec<u8>) -> Result<(), MaskError> {
        let end = held.iter().rposition(|b| *b == b'"').unwrap_or(0) + 1;
        let (raw, trailing) = held.split_at(end);
        // The held string is a value at the depth the scan is still at (the token that
        // closed it has not been counted yet).
        let is_link = self.rewrite.is_some()
            && self.depth == 1
            && self.key_depth == 1
            && self
                .last_key
                .as_deref()
                .is_some_and(|k| k == "nextLink" || k == "@odata.nextLink");
        let suspicious = !self.detectors.is_empty() && detect::might_contain_secret_json(raw);
        if !is_link && !suspicious {
            out.extend_from_slice(&held);
            return Ok(());
        }
        let Ok(text) = serde_json::from_slice::<String>(raw) else {
            return Err(MaskError::NotJson(
                "a string in the answer is not valid JSON".into(),
            ));
        };
        let mut replaced: Option<String> = None;
        if suspicious && !text.starts_with(PLACEHOLDER_PREFIX) {
            let (masker, masked, kinds) = (&self.masker, &mut self.masked, &mut self.kinds);
            let keying = self.keying;
            replaced = detect::redact(&text, &self.detectors, &mut |d, secret| {
                *masked += 1;
                kinds.insert(d.name().to_owned());
                masker.detected(keying, d.name(), secret, *masked)
            });
        }
        if replaced.is_none() && is_link {
            replaced = self.rewrite.as_ref().and_then(|r| r(&text));
        }
        match replaced {
            Some(r) => out.extend_from_slice(
                serde_json::to_string(&r)
                    .expect("a string serializes")
                    .as_bytes(),
            ),
            None => out.extend_from_slice(raw),
        }
        out.extend_from_slice(trailing);
        Ok(())
    }
}

/// An answer's body, masked as it streams.
pub struct MaskedBody<B> {
    pub inner: B,
    pub masker: StreamMasker,
    pub finished: bool,
}

impl<B> hyper::body::Body for MaskedBody<B>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<bytes::Bytes>, Self::Error>>> {
        use std::task::Poll;
        loop {
            if self.finished {
                return Poll::Ready(None);
            }
            match std::pin::Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(Box::new(e)))),
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let mut out = Vec::new();
                        if let Err(e) = self.masker.feed(&data, &mut out) {
                            self.finished = true;
                            return Poll::Ready(Some(Err(Box::new(e))));
                        }
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(hyper::body::Frame::data(
                                bytes::Bytes::from(out),
                            ))));
                        }
                    }
                    // Trailers pass as they are.
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                Poll::Ready(None) => {
                    self.finished = true;
                    let mut out = Vec::new();
                    if let Err(e) = self.masker.finish(&mut out) {
                        return Poll::Ready(Some(Err(Box::new(e))));
                    }
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(hyper::body::Frame::data(
                            bytes::Bytes::from(out),
                        ))));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &[u8], chunk: usize) -> Result<Vec<u8>, MaskError> {
        let m = std::sync::Arc::new(Masker::new(
            b"k".to_vec(),
            Detector::ALL.to_vec(),
            Vec::new(),
        ));
        let rewrite: LinkRewrite = Box::new(|u: &str| Some(u.replace("https://up", "https://gw")));
        let plan = m.audit_plan();
        let mut s = StreamMasker::new(m.clone(), plan, Some(rewrite));
        let mut out = Vec::new();
        for c in body.chunks(chunk.max(1)) {
            s.feed(c, &mut out)?;
        }
        s.finish(&mut out)?;
        Ok(out)
    }

    #[test]
    fn every_chunking_gives_the_same_answer() {
        let key = "A".repeat(86) + "==";
        let body = format!(
            r#"{{ "value" : [ {{"id": "https://up/x", "n": 1.50, "cs": "AccountName=a;AccountKey={key}", "e\"sc": "a\\\"b"}} ], "nextLink" : "https://up/list?s=2" }}"#
        );
        let whole = run(body.as_bytes(), body.len()).unwrap();
        let text = String::from_utf8(whole.clone()).unwrap();
        assert!(!text.contains(&key), "{text}");
        assert!(
            text.contains(r#""id": "https://up/x""#),
            "only nextLink values are rewritten: {text}"
        );
        assert!(
            text.contains(r#""nextLink" : "https://gw/list?s=2""#),
            "{text}"
        );
        assert!(
            text.contains(r#""n": 1.50"#) && text.contains(r#""e\"sc": "a\\\"b""#),
            "{text}"
        );
        for size in 1..40 {
            assert_eq!(
                run(body.as_bytes(), size).unwrap(),
                whole,
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn plain_answers_pass_byte_for_byte_and_broken_ones_fail() {
        let body = br#"{"value":[{"name":"vm1","tags":{}}, 3, true, null]}"#;
        for size in [1, 3, 7, body.len()] {
            assert_eq!(run(body, size).unwrap(), body.to_vec());
        }
        assert!(run(br#"{"value":"unterminated"#, 4).is_err());
    }

    #[test]
    fn only_the_answers_own_next_link_is_rewritten() {
        // What an agent can store in a resource comes back deeper than the top level.
        let body = br#"{"value":[{"name":"sa","nextLink":"https://up/evil","properties":{"nextLink":"https://up/evil2"}}],"tags":{"nextLink":"https://up/evil3"},"x":["https://up/evil4",{"nextLink":"https://up/evil5"}],"nextLink":"https://up/list?s=2"}"#;
        for size in [1, 2, 5, body.len()] {
            let out = String::from_utf8(run(body, size).unwrap()).unwrap();
            assert_eq!(out.matches("https://gw/").count(), 1, "{out}");
            assert!(
                out.ends_with(r#""nextLink":"https://gw/list?s=2"}"#),
                "{out}"
            );
        }
        // A top-level nextLink that is not a string, or a list inside it, is not read.
        let body = br#"{"nextLink":["https://up/evil"],"y":{"nextLink":{"a":"https://up/evil"}}}"#;
        assert_eq!(run(body, 3).unwrap(), body.to_vec());
    }
}
