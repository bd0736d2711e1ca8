//! What reached "Azure": every request the simulator served, with the principal that made it,
//! so tests can assert that the gateway (and never the agent) called Azure, and how often.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// Entries kept; older ones are dropped so load tests cannot grow memory without bound.
const CAPACITY: usize = 20_000;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    Arm,
    KeyVault,
    Graph,
    Entra,
    ManagedIdentity,
}

/// The authenticated caller of a request, as its token said.
#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    pub object_id: String,
    pub tenant_id: String,
    pub app_id: Option<String>,
    /// The simulator principal's configured name, when known.
    pub name: Option<String>,
    pub audience: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub seq: u64,
    pub time: String,
    pub service: Service,
    pub method: String,
    pub path: String,
    pub query: String,
    pub caller: Option<Caller>,
    pub status: u16,
    /// Set for requests that came inside an ARM batch.
    pub batch: bool,
}

#[derive(Default)]
pub struct CallLog {
    /// Appended by every handled request; read by tests and `/_sim/calls`.
    inner: Mutex<(u64, VecDeque<CallRecord>)>,
}

impl CallLog {
    pub fn push(&self, mut record: CallRecord) {
        let mut inner = self.inner.lock().expect("call log lock");
        inner.0 += 1;
        record.seq = inner.0;
        if inner.1.len() == CAPACITY {
            inner.1.pop_front();
        }
        inner.1.push_back(record);
    }

    /// Records with a sequence number above `since`.
    pub fn since(&self, since: u64) -> Vec<CallRecord> {
        let inner = self.inner.lock().expect("call log lock");
        inner.1.iter().filter(|r| r.seq > since).cloned().collect()
    }

    /// The sequence number of the newest record (0 when none).
    pub fn last_seq(&self) -> u64 {
        self.inner.lock().expect("call log lock").0
    }
}
