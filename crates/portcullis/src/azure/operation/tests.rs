use super::*;

// One file per topic; the helpers below are shared.
mod arm;
mod keyvault;
mod properties;

const Q: &str = "api-version=2024-03-01";
const SUB: &str = "00000000-0000-0000-0000-000000000001";

fn m(s: &str) -> Method {
    Method::from_bytes(s.as_bytes()).expect("test method")
}

fn arm_action(method: &str, path: &str) -> String {
    match name_arm(&m(method), path, Q) {
        Ok(op) => op.action,
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn arm_err(method: &str, path: &str) -> NamingError {
    match name_arm(&m(method), path, Q) {
        Ok(op) => panic!("{method} {path} named {}", op.action),
        Err(e) => e,
    }
}

fn kv_action(method: &str, path: &str) -> String {
    match name_keyvault(&m(method), "kv1", path, "api-version=7.4") {
        Ok(op) => {
            assert_eq!(op.plane, Plane::Data);
            op.action
        }
        Err(e) => panic!("{method} {path}: {e}"),
    }
}

fn rg(tail: &str) -> String {
    format!("/subscriptions/{SUB}/resourceGroups/rg1{tail}")
}
