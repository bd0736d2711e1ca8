//! A pending approval presented as a long-running operation, so an Azure SDK's or the az
//! CLI's own poller waits for the approver.
//!
//! ARM answers a long-running PUT, DELETE or POST with `201 Created` or `202 Accepted`, an
//! `Azure-AsyncOperation` status URL (`{"status": "InProgress" | "Succeeded" | "Failed" |
//! "Canceled", "error": {...}}`), a `Location` result URL (202 until done, then the result)
//! and `Retry-After`; clients poll until a terminal status:
//! <https://github.com/Azure/azure-resource-manager-rpc/blob/master/v1.0/async-api-reference.md>.
//! When policy holds such a request and the hold runs out, the gateway answers that way
//! with status and result URLs of its own (bound to the requester like every rewritten
//! URL); once approved, the first poll forwards the request and hands over to Azure's own
//! operation.
//!
//! This file: which operations clients poll ([`LroTable`]), how a rule chooses
//! ([`Style`]), the request kept for the later forward and the handover state, and how both
//! are sealed at rest ([`Sealer`]), and the plain shapes of ARM's async-operation protocol
//! ([`PollKind`], the status bodies). The store is `store.rs`; the HTTP side is
//! `pipeline/operations.rs`.

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::policy::ActionPattern;
/// How a rule presents a pending approval: a policy setting, read here.
pub use crate::policy::Style;

/// Where the gateway's own status and result URLs live on the data listener. Nothing below
/// it is ever forwarded to Azure.
pub const PATH_PREFIX: &str = crate::azure::route::APPROVAL_OPERATIONS;

/// One row of the table: requests with this method whose operation matches `action` are
/// long-running, and ARM's first answer to them has this status (201 or 202).
#[derive(Debug, Clone)]
pub struct LroEntry {
    pub action: ActionPattern,
    /// Upper case (`PUT`, `DELETE`, `POST`, `PATCH`).
    pub method: String,
    pub status: u16,
}

impl LroEntry {
    pub fn new(action: &str, method: &str, status: u16) -> Result<LroEntry, String> {
        let method = method.to_ascii_uppercase();
        if !matches!(method.as_str(), "PUT" | "PATCH" | "DELETE" | "POST") {
            return Err(format!(
                "method '{method}' is not PUT, PATCH, DELETE or POST"
            ));
        }
        if status != 201 && status != 202 {
            return Err(format!("answer {status} is not 201 or 202"));
        }
        Ok(LroEntry {
            action: ActionPattern::parse(action)?,
            method,
            status,
        })
    }
}

/// The built-in table: the operations the REST specs mark `x-ms-long-running-operation`
/// that agents most often send, with the status ARM answers first. Sources: the
/// azure-rest-api-specs for each provider (storage accounts create: 202 + `Location`;
/// compute PUT: 201 + `Azure-AsyncOperation`; compute DELETE and actions: 202 with both;
/// resource group DELETE and deployments) and azure-resource-manager-rpc's async API
/// reference (PUT 201/200, DELETE and POST 202).
const BUILT_IN: &[(&str, &str, u16)] = &[
    ("Microsoft.Storage/storageAccounts/write", "PUT", 202),
    ("Microsoft.Storage/storageAccounts/delete", "DELETE", 202),
    ("Microsoft.Compute/*/write", "PUT", 201),
    ("Microsoft.Compute/*/write", "PATCH", 202),
    ("Microsoft.Compute/*/delete", "DELETE", 202),
    ("Microsoft.Compute/*/action", "POST", 202),
    ("Microsoft.Network/*/write", "PUT", 201),
    ("Microsoft.Network/*/delete", "DELETE", 202),
    (
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        "DELETE",
        202,
    ),
    ("Microsoft.Resources/deployments/write", "PUT", 201),
    ("Microsoft.Resources/deployments/delete", "DELETE", 202),
    ("Microsoft.KeyVault/vaults/write", "PUT", 201),
    (
        "Microsoft.ContainerService/managedClusters/write",
        "PUT",
        201,
    ),
    (
        "Microsoft.ContainerService/managedClusters/delete",
        "DELETE",
        202,
    ),
    ("Microsoft.Web/sites/write", "PUT", 202),
    ("Microsoft.Sql/servers/*write", "PUT", 202),
    ("Microsoft.Sql/servers/*delete", "DELETE", 202),
];

/// Which operations Azure clients treat as long-running: the configuration's entries
/// first (they may change a built-in answer), then the built-in ones.
#[derive(Debug, Clone)]
pub struct LroTable {
    entries: Vec<LroEntry>,
}

impl LroTable {
    pub fn new(configured: Vec<LroEntry>) -> LroTable {
        let mut entries = configured;
        entries.extend(
            BUILT_IN
                .iter()
                .map(|(a, m, s)| LroEntry::new(a, m, *s).expect("built-in entries are valid")),
        );
        LroTable { entries }
    }

    /// The first answer ARM gives this long-running request, or `None` when clients do
    /// not poll it.
    pub fn answer(&self, method: &str, action: &str) -> Option<u16> {
        let action = action.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| e.method.eq_ignore_ascii_case(method) && e.action.matches(&action))
            .map(|e| e.status)
    }

    /// The status to answer a pending approval with, or `None` to hold and refuse as today.
    pub fn presented(&self, style: Style, method: &str, action: &str) -> Option<u16> {
        match style {
            Style::Hold => None,
            Style::Auto => self.answer(method, action),
            Style::Async => Some(self.answer(method, action).unwrap_or(202)),
        }
    }
}

impl Default for LroTable {
    fn default() -> Self {
        LroTable::new(Vec::new())
    }
}

/// The request as it will be forwarded once approved: exactly the bytes approved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRequest {
    pub method: String,
    /// The decoded path (as classified) and its re-encoding (as forwarded).
    pub path: String,
    pub upstream_path: String,
    /// Without the gateway's binding parameter.
    pub query: String,
    /// The headers forwarded (the agent's credentials and hop-by-hop ones already gone).
    pub headers: Vec<(String, String)>,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    pub correlation_id: String,
    /// What the deciding rule lets through unmasked.
    pub unmask: Vec<String>,
}

/// What a poll after the forward is answered from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Handover {
    /// Azure's first answer's status.
    pub status: u16,
    /// Azure's own status and result URLs, as paths (with query) below the upstream base.
    pub async_operation: Option<String>,
    pub location: Option<String>,
    /// For a PUT or PATCH, the resource itself (the final GET SDKs make).
    pub resource: Option<String>,
    /// A first answer that was final (no operation to follow): its content type and masked
    /// body.
    pub content_type: Option<String>,
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

impl Handover {
    /// An operation that ended with an error and nothing at Azure to follow: polls report
    /// `Failed` with this code, and the result URL answers it in ARM's error shape.
    pub fn error(status: u16, code: &str, message: &str) -> Handover {
        let body = serde_json::json!({"error": {"code": code, "message": message}});
        Handover {
            status,
            async_operation: None,
            location: None,
            resource: None,
            content_type: Some("application/json; charset=utf-8".into()),
            body: serde_json::to_vec(&body).expect("a Value serializes"),
        }
    }

    /// Azure answered at once: there is nothing to poll.
    pub fn is_final(&self) -> bool {
        self.async_operation.is_none() && self.location.is_none()
    }
}

mod b64 {
    use base64::Engine;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("sealed text is not base64")]
    Encoding,
    #[error("sealed state does not open under this gateway's key (another key, or altered)")]
    Open,
    #[error("sealed state is not what was sealed: {0}")]
    Shape(String),
}

/// Seals what the store keeps of a held request (its body may carry secrets) and of the
/// handover: ChaCha20-Poly1305 under a key derived from the URL-binding key (which replicas
/// already share), a random nonce per message, and the approval id as associated data, so
/// a sealed row cannot be moved to another approval.
pub struct Sealer {
    key: ring::aead::LessSafeKey,
}

impl Sealer {
    /// Derives the sealing key from the gateway's URL-binding key (HMAC-SHA256 with a fixed
    /// label), so the two keys never coincide and no new key needs sharing.
    pub fn derive(binding_key: &[u8]) -> Sealer {
        use hmac::{Hmac, Mac};
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(binding_key).expect("any key length");
        m.update(b"portcullis approval operations: sealing key v1");
        let bytes = m.finalize().into_bytes();
        let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &bytes)
            .expect("a 32-byte key");
        Sealer {
            key: ring::aead::LessSafeKey::new(key),
        }
    }

    pub fn seal<T: Serialize>(&self, approval: &str, value: &T) -> String {
        let mut data = serde_json::to_vec(value).expect("a state serializes");
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce_bytes);
        self.key
            .seal_in_place_append_tag(nonce, ring::aead::Aad::from(approval.as_bytes()), &mut data)
            .expect("sealing cannot fail for sizes the store takes");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&data);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open<T: for<'de> Deserialize<'de>>(
        &self,
        approval: &str,
        sealed: &str,
    ) -> Result<T, SealError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(sealed)
            .map_err(|_| SealError::Encoding)?;
        if raw.len() < 12 + 16 {
            return Err(SealError::Open);
        }
        let (nonce, rest) = raw.split_at(12);
        let nonce =
            ring::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, ring::aead::Aad::from(approval.as_bytes()), &mut buf)
            .map_err(|_| SealError::Open)?;
        serde_json::from_slice(plain).map_err(|e| SealError::Shape(e.to_string()))
    }
}

/// Which of an approval's URLs was polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollKind {
    /// `Azure-AsyncOperation`: `{"status": ...}`.
    Status,
    /// `Location`: 202 until done, then the result.
    Result,
}

impl PollKind {
    /// The URL's last segment.
    pub fn name(self) -> &'static str {
        match self {
            PollKind::Status => "status",
            PollKind::Result => "result",
        }
    }
}

/// The approval and URL a path below [`PATH_PREFIX`] names (`{id}/status`, `{id}/result`).
pub fn parse_path(path: &str) -> Option<(&str, PollKind)> {
    match path.strip_prefix(PATH_PREFIX)?.split_once('/')? {
        (id, "status") => Some((id, PollKind::Status)),
        (id, "result") => Some((id, PollKind::Result)),
        _ => None,
    }
}

/// An approval's operation in ARM's async-operation shape, at `path`.
pub fn operation_body(path: &str, a: &super::Approval, status: &str) -> serde_json::Value {
    serde_json::json!({
        "id": path,
        "name": a.id,
        "status": status,
        "startTime": a.created,
    })
}

/// The status of an approval still waiting for its approvers (or for the replica that
/// forwards it).
pub fn in_progress_body(path: &str, a: &super::Approval) -> serde_json::Value {
    let left = (a.quorum as usize).saturating_sub(a.approvals());
    let message = if a.status == super::Status::Pending {
        format!(
            "Waiting for approval {}: {left} more approval(s) needed from {}; it expires at {}. Nothing has been sent to Azure yet.",
            a.id,
            a.approvers_shown().join(", "),
            a.expires
        )
    } else {
        format!(
            "Approval {} was given; the request is being forwarded to Azure.",
            a.id
        )
    };
    let mut body = operation_body(path, a, "InProgress");
    body["properties"] = serde_json::json!({
        "approvalId": a.id,
        "approvalStatus": a.status,
        "message": message,
        "expiresOn": a.expires,
        "approvers": a.approvers,
        "approverNames": a.approvers_shown(),
        "quorum": a.quorum,
        "approvals": a.approvals(),
    });
    body
}

/// The status of an operation that failed without reaching Azure (denied, expired, used
/// elsewhere): `Failed` with the gateway's code, so the SDK raises its normal error.
pub fn failed_body(
    path: &str,
    a: &super::Approval,
    code: &str,
    message: &str,
) -> serde_json::Value {
    let mut body = operation_body(path, a, "Failed");
    body["error"] = serde_json::json!({"code": code, "message": format!("Portcullis: {message}")});
    body["properties"] = serde_json::json!({"approvalId": a.id, "approvalStatus": a.status});
    body
}

/// Azure's error in an answer body, or a generic one.
pub fn upstream_error(status: u16, body: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").cloned())
        .filter(|e| e.get("code").is_some())
        .unwrap_or_else(|| {
            serde_json::json!({"code": "OperationFailed", "message": format!("Azure answered {status}")})
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_what_clients_poll() {
        let t = LroTable::default();
        assert_eq!(
            t.answer("PUT", "Microsoft.Storage/storageAccounts/write"),
            Some(202)
        );
        assert_eq!(
            t.answer("DELETE", "microsoft.compute/virtualMachines/delete"),
            Some(202)
        );
        assert_eq!(
            t.answer("PUT", "Microsoft.Compute/virtualMachines/write"),
            Some(201)
        );
        assert_eq!(
            t.answer("POST", "Microsoft.Compute/virtualMachines/start/action"),
            Some(202)
        );
        // Key Vault data-plane writes and listKeys answer at once: never polled.
        assert_eq!(
            t.answer("POST", "Microsoft.Storage/storageAccounts/listKeys/action"),
            None
        );
        assert_eq!(
            t.answer("PUT", "Microsoft.KeyVault/vaults/secrets/setSecret/action"),
            None
        );
        assert_eq!(
            t.answer("PATCH", "Microsoft.Storage/storageAccounts/write"),
            None
        );
        assert_eq!(
            t.presented(
                Style::Hold,
                "PUT",
                "Microsoft.Storage/storageAccounts/write"
            ),
            None
        );
        assert_eq!(
            t.presented(
                Style::Async,
                "POST",
                "Microsoft.Storage/storageAccounts/listKeys/action"
            ),
            Some(202)
        );
    }

    #[test]
    fn configured_entries_come_first() {
        let t = LroTable::new(vec![
            LroEntry::new("Microsoft.Storage/storageAccounts/write", "put", 201).unwrap(),
            LroEntry::new("Contoso.Widgets/widgets/write", "PUT", 202).unwrap(),
        ]);
        assert_eq!(
            t.answer("PUT", "Microsoft.Storage/storageAccounts/write"),
            Some(201)
        );
        assert_eq!(t.answer("PUT", "Contoso.Widgets/widgets/write"), Some(202));
        assert!(LroEntry::new("Contoso.Widgets/widgets/write", "GET", 202).is_err());
        assert!(LroEntry::new("Contoso.Widgets/widgets/write", "PUT", 200).is_err());
    }

    #[test]
    fn sealed_state_opens_only_under_its_key_and_approval() {
        let s = Sealer::derive(b"binding key");
        let req = StoredRequest {
            method: "PUT".into(),
            path: "/x".into(),
            upstream_path: "/x".into(),
            query: "api-version=1".into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: br#"{"properties":{"adminPassword":"hunter2-secret"}}"#.to_vec(),
            correlation_id: "c".into(),
            unmask: vec![],
        };
        let sealed = s.seal("a1", &req);
        assert!(!sealed.contains("hunter2"));
        let raw = base64::engine::general_purpose::STANDARD
            .decode(&sealed)
            .unwrap();
        assert!(
            !raw.windows(7).any(|w| w == b"hunter2"),
            "not in clear text"
        );
        let back: StoredRequest = s.open("a1", &sealed).unwrap();
        assert_eq!(back.body, req.body);
        assert!(
            s.open::<StoredRequest>("a2", &sealed).is_err(),
            "another approval"
        );
        assert!(
            Sealer::derive(b"other key")
                .open::<StoredRequest>("a1", &sealed)
                .is_err(),
            "another key"
        );
        assert_ne!(s.seal("a1", &req), sealed, "a fresh nonce each time");
    }
}
