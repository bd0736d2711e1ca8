use super::*;

fn op(method: &str, path: &str) -> Operation {
    crate::azure::operation::name_arm(&method.parse().unwrap(), path, "api-version=2023-05-01")
        .unwrap()
}

const SA: &str =
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa1";

#[test]
fn catalog_paths_are_masked_and_equal_values_hash_equally() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let plan = m.plan(&op("POST", &format!("{SA}/listKeys")), &[]);
    let body = br#"{"keys":[{"keyName":"key1","value":"c2VjcmV0MQ==","permissions":"FULL"},{"keyName":"key2","value":"c2VjcmV0MQ==","permissions":"FULL"}]}"#;
    let Masked::Changed { body, count, kinds } = m.mask_json(&plan, body).unwrap() else {
        panic!("masked")
    };
    let text = String::from_utf8(body).unwrap();
    assert_eq!(count, 2);
    assert!(!text.contains("c2VjcmV0MQ=="), "{text}");
    assert!(
        text.contains("\"keyName\":\"key1\""),
        "the rest stays: {text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["keys"][0]["value"], v["keys"][1]["value"],
        "equal secrets, equal placeholders"
    );
    assert!(
        v["keys"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("[masked:storage-keys:")
    );
    assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["storage-keys"]);
}

/// Issue 19, finding 4: text the agent chose never masks into a catalogued secret's
/// placeholder (nor into another finding's), while a catalogued secret's stays stable.
#[test]
fn placeholders_are_keyed_per_kind_and_origin() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let list_keys = op("POST", &format!("{SA}/listKeys"));
    let secret = "c2VjcmV0MQ==";
    let answer = format!(r#"{{"keys":[{{"value":"{secret}"}}]}}"#);
    let catalogued = |plan: &Plan| match m.mask_json(plan, answer.as_bytes()).unwrap() {
        Masked::Changed { body, .. } => {
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["keys"][0]["value"].as_str().unwrap().to_owned()
        }
        Masked::Unchanged => panic!("masked"),
    };
    let real = catalogued(&m.plan(&list_keys, &[]));
    assert_eq!(
        real,
        catalogued(&m.plan(&list_keys, &[])),
        "stable across answers"
    );
    // The same value from another resource (a secret the agent wrote itself) tags apart.
    let elsewhere = op("POST", &format!("{SA}2/listKeys"));
    assert_ne!(real, catalogued(&m.plan(&elsewhere, &[])));
    let tag = |p: &str| {
        p.trim_end_matches(']')
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned()
    };
    // The agent's guesses, echoed: the right one among them.
    let echo = format!(
        r#"{{"message":"Password=wrong AccountKey={secret} Pwd={secret} Password={secret}"}}"#
    );
    let vm = op(
        "GET",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
    );
    for plan in [m.plan(&vm, &[]), m.plan(&list_keys, &[])] {
        let Masked::Changed { body, count, .. } = m.mask_json(&plan, echo.as_bytes()).unwrap()
        else {
            panic!("masked")
        };
        assert_eq!(count, 4);
        let text = String::from_utf8(body).unwrap();
        let tags: BTreeSet<String> = text
            .split("[masked:")
            .skip(1)
            .map(|p| tag(p.split(']').next().unwrap()))
            .collect();
        assert_eq!(tags.len(), 4, "equal guesses, unequal tags: {text}");
        assert!(!tags.contains(&tag(&real)), "{text} vs {real}");
    }
    // Text the gateway keeps is tagged apart from anything the agent sees, stably.
    let kept = |t: &str| match m.mask_text(m.audit_plan(), t.as_bytes()) {
        Masked::Changed { body, .. } => String::from_utf8(body).unwrap(),
        Masked::Unchanged => panic!("masked"),
    };
    let k = kept(&format!("AccountKey={secret}"));
    assert_eq!(k, kept(&format!("AccountKey={secret}")));
    assert!(!k.contains(&tag(&real)), "{k} vs {real}");
}

/// Issue 19, finding 8: a `\u` escape spells a marker the byte pre-scan cannot see; the
/// string is decoded and checked, by the one-pass scanner, the streaming masker and
/// request masking alike.
#[test]
fn escaped_markers_are_decoded_and_checked() {
    let m = std::sync::Arc::new(Masker::new(
        b"k".to_vec(),
        Detector::ALL.to_vec(),
        Vec::new(),
    ));
    let vm = op(
        "GET",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
    );
    let plan = m.plan(&vm, &[]);
    for body in [
        r#"{"tags":{"cs":"AccountName=a;\u0041ccountKey=s3cretKey=="}}"#,
        r#"{"tags":{"cs":"Server=x;P\u0061ssword\u003dhunter2"}}"#,
        r#"{"tags":{"t":"\u0065yJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudC0xIn0.SflKxwRJSMeKKF2QT4fwpMeJf36"}}"#,
    ] {
        let Masked::Changed { body: whole, .. } = m.mask_json(&plan, body.as_bytes()).unwrap()
        else {
            panic!("masked: {body}")
        };
        let v: Value = serde_json::from_slice(&whole).unwrap();
        let text = v.to_string();
        assert!(
            !text.contains("s3cretKey") && !text.contains("hunter2") && !text.contains("SflKx"),
            "{text}"
        );
        let mut s = stream::StreamMasker::new(m.clone(), &plan, None);
        let mut streamed = Vec::new();
        s.feed(body.as_bytes(), &mut streamed).unwrap();
        s.finish(&mut streamed).unwrap();
        assert_eq!(streamed, whole, "the streaming masker agrees");
        let Masked::Changed { .. } = m.mask_request_json(&vm, body.as_bytes()).unwrap() else {
            panic!("request masked: {body}")
        };
    }
}

#[test]
fn batch_answers_are_matched_by_place_and_name_or_masked_by_every_plan() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let plan = m.plan_batch(
        &[
            ("keys".into(), op("POST", &format!("{SA}/listKeys"))),
            ("read".into(), op("GET", SA)),
        ],
        &[],
    );
    let keys = r#"{"keys":[{"keyName":"key1","value":"c2VjcmV0MQ=="}]}"#;
    let masked = |body: String| match m.mask_json(&plan, body.as_bytes()).unwrap() {
        Masked::Changed { body, .. } => String::from_utf8(body).unwrap(),
        Masked::Unchanged => body,
    };
    // In place and named: the request's own plan.
    let out = masked(format!(
        r#"{{"responses":[{{"name":"keys","content":{keys}}},{{"name":"read","content":{{"name":"sa1"}}}}]}}"#
    ));
    assert!(!out.contains("c2VjcmV0MQ=="), "{out}");
    // Answers out of order, without a name, or past the last request: every plan of
    // the batch applies.
    for answer in [
        format!(
            r#"{{"responses":[{{"name":"read","content":{keys}}},{{"name":"keys","content":{{}}}}]}}"#
        ),
        format!(r#"{{"responses":[{{"content":{keys}}}]}}"#),
        format!(
            r#"{{"responses":[{{"name":"keys","content":{{}}}},{{"name":"read","content":{{}}}},{{"name":"read","content":{keys}}}]}}"#
        ),
    ] {
        let out = masked(answer);
        assert!(!out.contains("c2VjcmV0MQ=="), "{out}");
        assert!(out.contains("[masked:storage-keys:"), "{out}");
    }
}

#[test]
fn nothing_to_mask_leaves_the_bytes_alone_and_unmask_lets_a_profile_through() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let plain = br#"{"value": [1.50, 2e3, {"name":"vm1"}]}"#;
    assert_eq!(
        m.mask_json(&m.plan(&op("GET", SA), &[]), plain).unwrap(),
        Masked::Unchanged
    );
    let plan = m.plan(
        &op("POST", &format!("{SA}/listKeys")),
        &["storage-keys".into()],
    );
    assert_eq!(
        m.mask_json(&plan, br#"{"keys":[{"value":"abc"}]}"#)
            .unwrap(),
        Masked::Unchanged
    );
    assert!(
        m.mask_json(
            &m.plan(&op("POST", &format!("{SA}/listKeys")), &[]),
            b"not json"
        )
        .is_err(),
        "a catalog answer that cannot be parsed is an error (fail closed)"
    );
}

#[test]
fn request_bodies_lose_their_secrets_for_keeping() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let kv = crate::azure::operation::name_keyvault(
        &http::Method::PUT,
        "kv",
        "/secrets/x",
        "api-version=7.4",
    )
    .unwrap();
    let Masked::Changed { body, .. } = m
        .mask_request_json(&kv, br#"{"value":"hunter2","contentType":"text/plain"}"#)
        .unwrap()
    else {
        panic!("masked")
    };
    let text = String::from_utf8(body).unwrap();
    assert!(
        !text.contains("hunter2") && text.contains("text/plain"),
        "{text}"
    );
    let vm = op(
        "PUT",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1",
    );
    let Masked::Changed { body, .. } = m.mask_request_json(&vm, br#"{"location":"eastus","properties":{"osProfile":{"adminUsername":"azureuser","adminPassword":"P@ssw0rd!"}}}"#).unwrap() else { panic!("masked") };
    let text = String::from_utf8(body).unwrap();
    assert!(
        !text.contains("P@ssw0rd!") && text.contains("azureuser"),
        "{text}"
    );
    let dep = op(
        "PUT",
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Resources/deployments/d",
    );
    let body = br#"{"properties":{"mode":"Incremental","template":{"parameters":{"pw":{"type":"securestring"},"name":{"type":"string"}}},"parameters":{"pw":{"value":"t0p-secret"},"name":{"value":"web1"}}}}"#;
    let Masked::Changed { body, .. } = m.mask_request_json(&dep, body).unwrap() else {
        panic!("masked")
    };
    let text = String::from_utf8(body).unwrap();
    assert!(
        !text.contains("t0p-secret") && text.contains("web1"),
        "{text}"
    );
    assert_eq!(
        m.mask_request_json(&op("PUT", SA), br#"{"location":"eastus"}"#)
            .unwrap(),
        Masked::Unchanged
    );
}

#[test]
fn detectors_mask_secret_shapes_anywhere() {
    let m = Masker::new(b"k".to_vec(), Detector::ALL.to_vec(), Vec::new());
    let key = "A".repeat(86) + "==";
    let body = format!(
        r#"{{"tags":{{"cs":"DefaultEndpointsProtocol=https;AccountName=sa;AccountKey={key};EndpointSuffix=core.windows.net"}}}}"#
    );
    let Masked::Changed { body, .. } = m
        .mask_json(&m.plan(&op("GET", SA), &[]), body.as_bytes())
        .unwrap()
    else {
        panic!("masked")
    };
    let text = String::from_utf8(body).unwrap();
    assert!(!text.contains(&key), "{text}");
    assert!(
        text.contains("AccountName=sa"),
        "only the secret is replaced: {text}"
    );
}
