//! The state store's behaviour, the same on both backends: SQLite (a temporary file) and
//! PostgreSQL (a fresh schema in the `test` database on 127.0.0.1:5432, dropped after).

use portcullis::approval::store::Inserted;
use portcullis::approval::{Approval, HeldRequest, Status, Vote};
use portcullis::audit::chain::verify;
use portcullis::audit::checkpoint::Checkpoint;
use portcullis::audit::record::{AuditRecord, Phase};
use portcullis::audit::store::{SessionFilter, Store};

/// The PostgreSQL the tests use (override with PORTCULLIS_TEST_PG).
pub fn pg_url() -> String {
    std::env::var("PORTCULLIS_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A PostgreSQL schema of its own for one test; dropped when this is dropped.
pub struct Schema(pub String);

impl Schema {
    pub fn new() -> Schema {
        Schema(format!("pc_test_{}", uuid::Uuid::new_v4().simple()))
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .arg(pg_url())
            .args([
                "-q",
                "-c",
                &format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0),
            ])
            .output();
    }
}

async fn backends() -> Vec<(Store, Option<Schema>, std::path::PathBuf)> {
    let dir = std::env::temp_dir().join(format!("pc-store-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = Store::open(&dir.join("audit.db")).await.unwrap();
    let schema = Schema::new();
    let pg = Store::open_postgres(&pg_url(), Some(&schema.0))
        .await
        .expect("PostgreSQL on 127.0.0.1:5432 (database test) is reachable");
    vec![(sqlite, None, dir.clone()), (pg, Some(schema), dir)]
}

fn record(i: usize, session: &str, phase: Phase) -> AuditRecord {
    let mut r = AuditRecord::new(
        format!("req-{i}"),
        session.to_owned(),
        phase,
        "GET".into(),
        format!("/subscriptions/s/resourceGroups/rg{i}?api-version=2022-09-01"),
    );
    r.principal = Some("p-1".into());
    // The second session's records name their principal (from i = 4 on).
    if i >= 4 {
        r.principal_name = Some("build-agent (app)".into());
    }
    r.decision = Some(if i.is_multiple_of(3) { "deny" } else { "allow" }.into());
    r
}

#[tokio::test]
async fn chains_checkpoints_retention_and_queries_behave_alike_on_both_backends() {
    let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let trusted = vec![portcullis::audit::chain::hex(
        key.verifying_key().as_bytes(),
    )];
    for (store, _schema, _dir) in backends().await {
        let b = store.backend();
        let mut head = store.head("gw-a").await.unwrap();
        assert_eq!(head.0, 0, "{b}");
        let records: Vec<AuditRecord> = (0..6)
            .map(|i| {
                record(
                    i,
                    // s2 as a named session is kept: the name, then its principal.
                    if i < 3 { "s1" } else { "s2@p-b" },
                    if i.is_multiple_of(3) {
                        Phase::Refused
                    } else {
                        Phase::Request
                    },
                )
            })
            .collect();
        head = store.append("gw-a", &head, &records[..4]).await.unwrap();
        store
            .add_checkpoint(&Checkpoint::sign(&key, "gw-a", head.0, &head.1))
            .await
            .unwrap();
        head = store.append("gw-a", &head, &records[4..]).await.unwrap();
        assert_eq!(head.0, 6, "{b}");
        assert_eq!(store.head("gw-a").await.unwrap(), head, "{b}");
        let chain = store.chain("gw-a").await.unwrap();
        let checkpoints = store.checkpoints("gw-a").await.unwrap();
        let v = verify("gw-a", &chain, &checkpoints, None, &trusted).unwrap();
        assert_eq!((v.records, v.checkpoints), (6, 1), "{b}");

        // Append-only, on both.
        let edit = match b {
            "sqlite" => "UPDATE audit_records SET record = '{}' WHERE seq = 1",
            _ => "UPDATE audit_records SET record = '{}' WHERE seq = 1",
        };
        let refused = portcullis::audit::store::raw_execute(&store, edit).await;
        assert!(refused.is_err(), "{b}: updates are refused");
        let refused = portcullis::audit::store::raw_execute(
            &store,
            "DELETE FROM audit_records WHERE seq = 6",
        )
        .await;
        assert!(refused.is_err(), "{b}: deletes are refused");

        // Queries.
        let sessions = store.sessions(&SessionFilter::default()).await.unwrap();
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2@p-b"], "{b}");
        assert_eq!(sessions[0].requests, 3, "{b}");
        assert_eq!(sessions[0].refused, 1, "{b}");
        assert_eq!(sessions[0].denied, 1, "{b}");
        // The name comes from the records' own text, on either backend.
        assert_eq!(sessions[0].principal_name, None, "{b}");
        assert_eq!(
            sessions[1].principal_name.as_deref(),
            Some("build-agent (app)"),
            "{b}"
        );
        let denied = store
            .sessions(&SessionFilter {
                decision: Some("refused".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(denied.len(), 2, "{b}");
        let newest = store
            .sessions(&SessionFilter {
                newest: Some(1),
                ..Default::default()
            })
            .await
            .unwrap();
        let newest: Vec<&str> = newest.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(newest, ["s2@p-b"], "{b}");
        let nobody = store
            .sessions(&SessionFilter {
                principal: Some("p-2".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(nobody.is_empty(), "{b}");
        assert_eq!(store.session("s2@p-b").await.unwrap().len(), 3, "{b}");
        // Found by its whole id or by the name alone while one principal used it.
        use portcullis::audit::store::FoundSession;
        for asked in ["s2@p-b", "s2"] {
            match store.find_session(asked).await.unwrap() {
                FoundSession::One(id, links) => {
                    assert_eq!((id.as_str(), links.len()), ("s2@p-b", 3), "{b}")
                }
                other => panic!("{b}: {asked}: {other:?}"),
            }
        }
        assert!(
            matches!(store.find_session("s").await.unwrap(), FoundSession::None),
            "{b}"
        );
        assert_eq!(
            store.count("2000-01-01T00:00:00Z", None).await.unwrap(),
            6,
            "{b}"
        );
        let mut seen = 0;
        let mut cursor = None;
        loop {
            let page = store
                .page("2000-01-01T00:00:00Z", None, cursor.as_ref(), 4)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            cursor = Some(last.cursor());
            seen += page.len();
        }
        assert_eq!(seen, 6, "{b}");

        // Retention removes what the checkpoint seals, and what remains verifies.
        let mark = store
            .prune("gw-a", "2999-01-01T00:00:00Z", &key)
            .await
            .unwrap()
            .expect("a sealed segment");
        assert_eq!(mark.through_seq, 4, "{b}");
        let chain = store.chain("gw-a").await.unwrap();
        assert_eq!(chain.first().unwrap().seq, 5, "{b}");
        let pruned = store.pruned("gw-a").await.unwrap();
        let v = verify("gw-a", &chain, &checkpoints, pruned.as_ref(), &trusted).unwrap();
        assert_eq!(v.pruned_through, Some(4), "{b}");
        assert_eq!(store.head("gw-a").await.unwrap(), head, "{b}");
    }
}

fn approval(id: &str, principal: &str, digest: &str, expires: &str) -> Approval {
    Approval {
        id: id.into(),
        status: Status::Pending,
        principal: principal.into(),
        principal_app: None,
        principal_name: None,
        principal_kind: None,
        action: "Microsoft.Storage/storageAccounts/write".into(),
        scope: "/subscriptions/s/resourceGroups/rg".into(),
        rule: Some("r".into()),
        rule_reason: "held".into(),
        request: HeldRequest {
            method: "PUT".into(),
            path: "/x".into(),
            query: String::new(),
            headers: Vec::new(),
            body: None,
            highlights: Vec::new(),
        },
        digest: digest.into(),
        reason: None,
        approvers: vec!["*".into()],
        approver_names: Vec::new(),
        quorum: 2,
        credential: None,
        grant_window_secs: None,
        session: "s".into(),
        created: portcullis::audit_time(),
        expires: expires.into(),
        decided: None,
        consumed: None,
        votes: Vec::new(),
        inner: Vec::new(),
    }
}

fn vote(voter: &str, v: &str) -> Vote {
    Vote {
        voter: voter.into(),
        voter_name: None,
        vote: v.into(),
        comment: None,
        time: portcullis::audit_time(),
    }
}

#[tokio::test]
async fn approvals_are_decided_and_consumed_once_on_both_backends() {
    let now = portcullis::audit_time();
    let later = "2999-01-01T00:00:00.000000Z";
    for (store, _schema, _dir) in backends().await {
        let b = store.backend();
        assert!(
            store
                .insert_approval(&approval("a1", "p", "d1", later), 0, &now)
                .await
                .unwrap()
                == Inserted::New
        );
        // The same live request again: refused, so callers share the first.
        assert!(
            store
                .insert_approval(&approval("a2", "p", "d1", later), 0, &now)
                .await
                .unwrap()
                == Inserted::Exists,
            "{b}"
        );
        assert_eq!(
            store
                .live_approval("p", "d1", &now)
                .await
                .unwrap()
                .unwrap()
                .id,
            "a1",
            "{b}"
        );
        // A cap on pending approvals per principal: many inserts at once (16 connections
        // racing) leave exactly the cap, and another principal is not affected.
        let mut racers = tokio::task::JoinSet::new();
        for i in 0..16 {
            let (store, now) = (store.clone(), now.clone());
            racers.spawn(async move {
                store
                    .insert_approval(
                        &approval(&format!("cap{i}"), "capped", &format!("dc{i}"), later),
                        5,
                        &now,
                    )
                    .await
                    .unwrap()
            });
        }
        let mut new = 0;
        while let Some(r) = racers.join_next().await {
            match r.unwrap() {
                Inserted::New => new += 1,
                Inserted::Capped { pending } => assert_eq!(pending, 5, "{b}"),
                Inserted::Exists => panic!("{b}: distinct requests"),
            }
        }
        assert_eq!(new, 5, "{b}: the cap holds under concurrent inserts");
        assert_eq!(
            store
                .insert_approval(&approval("cap-other", "other", "dc0", later), 5, &now)
                .await
                .unwrap(),
            Inserted::New,
            "{b}"
        );
        assert_eq!(store.pending_approvals(&now).await.unwrap(), 7, "{b}");
        use portcullis::approval::store::Voted;
        assert_eq!(
            store
                .vote("a1", &vote("v1", "approve"), 2, &now)
                .await
                .unwrap(),
            Voted::Now(Status::Pending),
            "{b}"
        );
        assert_eq!(
            store
                .vote("a1", &vote("v1", "approve"), 2, &now)
                .await
                .unwrap(),
            Voted::Twice,
            "{b}"
        );
        assert_eq!(
            store
                .vote("a1", &vote("v2", "approve"), 2, &now)
                .await
                .unwrap(),
            Voted::Now(Status::Approved),
            "{b}"
        );
        assert_eq!(
            store
                .vote("a1", &vote("v3", "deny"), 2, &now)
                .await
                .unwrap(),
            Voted::NotPending(Status::Approved),
            "{b}"
        );
        let a = store.approval("a1").await.unwrap().unwrap();
        assert_eq!((a.status, a.votes.len()), (Status::Approved, 2), "{b}");

        // Many redeemers at once: exactly one wins.
        let mut racers = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (store, a, now) = (store.clone(), a.clone(), now.clone());
            racers.spawn(async move { store.consume(&a, &now, Some(later)).await.unwrap() });
        }
        let mut wins = 0;
        while let Some(w) = racers.join_next().await {
            wins += usize::from(w.unwrap());
        }
        assert_eq!(wins, 1, "{b}: consumed once");
        assert!(
            store
                .grant("p", &a.action, &a.scope, &now)
                .await
                .unwrap()
                .is_some(),
            "{b}"
        );

        // Concurrent votes reaching the quorum decide once.
        assert!(
            store
                .insert_approval(&approval("a3", "p", "d3", later), 0, &now)
                .await
                .unwrap()
                == Inserted::New
        );
        let mut voters = tokio::task::JoinSet::new();
        for i in 0..8 {
            let store = store.clone();
            let now = now.clone();
            voters.spawn(async move {
                store
                    .vote("a3", &vote(&format!("v{i}"), "approve"), 2, &now)
                    .await
                    .unwrap()
            });
        }
        let mut approved = 0;
        while let Some(v) = voters.join_next().await {
            if v.unwrap() == Voted::Now(Status::Approved) {
                approved += 1;
            }
        }
        assert_eq!(approved, 1, "{b}: one vote completes the quorum");

        // Expiry.
        assert!(
            store
                .insert_approval(&approval("a4", "p", "d4", "2000-01-01T00:00:00Z"), 0, &now)
                .await
                .unwrap()
                == Inserted::New
        );
        let expired = store.expire_due(&now).await.unwrap();
        assert!(expired.contains(&"a4".to_owned()), "{b}: {expired:?}");
        assert_eq!(
            store.approval("a4").await.unwrap().unwrap().status,
            Status::Expired,
            "{b}"
        );
    }
}

/// A held request is its own outcome, counted alike by the store's summary (SQL, both
/// backends) and by a timeline's [`Tally`]: held records count once per approval, whether
/// or not that approval later let a request through; records written before `Phase::Held`
/// existed (refused, decided `approve`, answered 202 or `ApprovalPending`) count as held.
#[tokio::test]
async fn held_requests_count_as_held_not_refused_on_both_backends() {
    use portcullis::audit::record::Tally;
    let held = |i: usize, session: &str, approval: &str| {
        let mut r = record(i, session, Phase::Held);
        r.decision = Some("approve".into());
        r.approval = Some(approval.into());
        r.status = Some(202);
        r
    };
    // As gateways before `Phase::Held` wrote them.
    let legacy = |i: usize, session: &str, approval: &str, status: u16, reason: &str| {
        let mut r = record(i, session, Phase::Refused);
        r.decision = Some("approve".into());
        r.approval = Some(approval.into());
        r.status = Some(status);
        r.reason = Some(reason.into());
        r
    };
    let forwarded = |i: usize, session: &str, approval: &str| {
        let mut r = record(i, session, Phase::Request);
        r.decision = Some("approve".into());
        r.approval = Some(approval.into());
        r
    };
    let pending = "Portcullis: This request waits for approval a-3 (1 more approval(s) needed from group:ops; it expires at 2026-12-05T18:00:00Z). Nothing was sent to Azure.";
    let records = vec![
        // s-approved: held (202), polled on, forwarded by the poll, and its status polled.
        held(1, "s-approved", "a-1"),
        forwarded(2, "s-approved", "a-1"),
        forwarded(3, "s-approved", "a-1"),
        record(4, "s-approved", Phase::Request), // allow
        // s-waiting: held three times for one approval (hold style, retried), never decided.
        legacy(5, "s-waiting", "a-3", 403, pending),
        legacy(6, "s-waiting", "a-3", 403, pending),
        held(7, "s-waiting", "a-3"),
        // A long-running answer from before `held`, and one let go at shutdown.
        legacy(
            8,
            "s-waiting",
            "a-4",
            202,
            "held for approval a-4; not decided within the hold",
        ),
        legacy(
            9,
            "s-waiting",
            "a-5",
            503,
            "Portcullis: This gateway is shutting down. Approval a-5 stays pending",
        ),
        // s-refused: denied by policy, an approval denied by a person, unauthenticated.
        record(10, "s-refused", Phase::Refused), // decided deny below
        legacy(
            11,
            "s-refused",
            "a-6",
            403,
            "Portcullis: alice denied approval a-6: no. Nothing was sent to Azure.",
        ),
        {
            let mut r = record(12, "s-refused", Phase::Refused);
            r.decision = None;
            r.status = Some(401);
            r
        },
    ];
    let mut records = records;
    records[9].decision = Some("deny".into());
    for (store, _schema, _dir) in backends().await {
        let b = store.backend();
        let head = store.head("gw-h").await.unwrap();
        store.append("gw-h", &head, &records).await.unwrap();
        let sessions = store.sessions(&SessionFilter::default()).await.unwrap();
        let got: Vec<(&str, i64, i64, i64, i64, i64, i64)> = sessions
            .iter()
            .map(|s| {
                (
                    s.id.as_str(),
                    s.requests,
                    s.allowed,
                    s.after_approval,
                    s.held,
                    s.refused,
                    s.denied,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("s-approved", 4, 3, 1, 1, 0, 0),
                ("s-waiting", 3, 0, 0, 3, 0, 0),
                ("s-refused", 3, 0, 0, 0, 3, 1),
            ],
            "{b}"
        );
        // The timeline's count agrees with the store's.
        for s in &sessions {
            let links = store.session(&s.id).await.unwrap();
            let t = Tally::of(links.iter().map(|l| &l.record));
            assert_eq!(
                (t.requests, t.allowed, t.after_approval, t.held, t.refused),
                (s.requests, s.allowed, s.after_approval, s.held, s.refused),
                "{b}: {}",
                s.id
            );
        }
        let filtered = |d: &'static str| {
            let store = store.clone();
            async move {
                store
                    .sessions(&SessionFilter {
                        decision: Some(d.into()),
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|s| s.id)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(filtered("held").await, ["s-approved", "s-waiting"], "{b}");
        assert_eq!(filtered("refused").await, ["s-refused"], "{b}");
        assert_eq!(
            filtered("approve").await,
            ["s-approved", "s-waiting", "s-refused"],
            "{b}"
        );
        assert_eq!(filtered("deny").await, ["s-refused"], "{b}");
    }
}

/// An approval past its expiry that the sweeper has not reached yet still holds its place
/// among the live ones (the store's unique index); asking anew for the same request must
/// not be blocked by it. The hold no longer expires every overdue approval before each
/// insert (a second write, a second fsync, per held request): it expires them when an
/// insert finds its place taken by nothing live, and asks again.
#[tokio::test]
async fn an_overdue_approval_not_yet_swept_gives_way_to_a_new_one() {
    use portcullis::approval::Approvals;
    use portcullis::approval::lro::{LroTable, Sealer};
    use portcullis::approval::notify::Notifier;
    use portcullis::approval::service::{ApprovalsConfig, HoldError, Request};
    use portcullis::audit::writer::{Recorder, WriterOptions};
    use std::time::Duration;
    let stamp = |d: chrono::Duration| {
        (chrono::Utc::now() + d).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    for (store, _schema, dir) in backends().await {
        let b = store.backend();
        let overdue = approval(
            "overdue-1",
            "p-overdue",
            "d-1",
            &stamp(-chrono::Duration::seconds(5)),
        );
        assert_eq!(
            store
                .insert_approval(&overdue, 0, &portcullis::audit_time())
                .await
                .unwrap(),
            Inserted::New,
            "{b}"
        );
        let recorder = Recorder::start(
            store.clone(),
            format!("gw-overdue-{b}"),
            WriterOptions {
                checkpoint_every: Duration::from_secs(3600),
                retention: None,
                signing_key: portcullis::audit::checkpoint::load_or_create(
                    &dir.join(format!("overdue-{b}.key")),
                    true,
                )
                .unwrap(),
            },
        )
        .await
        .unwrap();
        let approvals = Approvals::new(
            store.clone(),
            recorder,
            Notifier::none(),
            ApprovalsConfig {
                hold: Duration::from_secs(1),
                max_held: 8,
                max_pending_per_principal: 0,
                recheck: Duration::from_secs(1),
                retry_after: Duration::from_secs(1),
                long_running: LroTable::new(Vec::new()),
                sealer: Sealer::derive(b"a test binding key"),
            },
        );
        let principal = portcullis::identity::principal::Principal {
            tenant_id: "t".into(),
            object_id: "p-overdue".into(),
            kind: portcullis::identity::principal::PrincipalKind::App,
            app_id: None,
            groups: Vec::new(),
            roles: Vec::new(),
            display_name: None,
            token_version: 2,
        };
        let fresh = approval(
            "fresh-1",
            "p-overdue",
            "d-1",
            &stamp(chrono::Duration::minutes(10)),
        );
        let held = approvals
            .hold(Request {
                principal,
                draft: fresh,
                named: None,
                wait: Duration::ZERO,
            })
            .await;
        match held {
            Err(HoldError::Refused(r)) => assert_eq!(
                (r.code, r.approval.id.as_str()),
                ("ApprovalPending", "fresh-1"),
                "{b}"
            ),
            Err(e) => panic!("{b}: {e:?}"),
            Ok(_) => panic!("{b}: a new approval let the request through"),
        }
        let old = store.approval("overdue-1").await.unwrap().unwrap();
        assert_eq!(old.status, Status::Expired, "{b}");
    }
}
