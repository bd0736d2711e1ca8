//! The simulator's shared state: configuration, keys, the in-memory world, the call log and
//! the faults in force. One `Sim` serves every connection.

use std::sync::{Mutex, MutexGuard};

use crate::calls::CallLog;
use crate::config::SimConfig;
use crate::entra::assertion::AppCredentials;
use crate::entra::keys::KeyRing;
use crate::faults::FaultState;
use crate::world::World;

pub struct Sim {
    pub config: SimConfig,
    pub keys: KeyRing,
    /// `https://{address}` the simulator listens on: its authority, and the v2 issuer's base.
    pub base_url: String,
    /// ARM resources, operations and Key Vault contents. Handlers hold it only while they
    /// compute an answer (never across an await), so one lock is enough for a test double.
    world: Mutex<World>,
    pub calls: CallLog,
    pub faults: FaultState,
    /// Certificates and federated credentials registered for apps at runtime.
    pub credentials: AppCredentials,
    /// Authorization codes handed out by interactive sign-in, not yet redeemed.
    pub codes: crate::entra::authorize::Codes,
}

impl Sim {
    pub fn new(config: SimConfig, base_url: String) -> Sim {
        let world = World::seeded(&config);
        Sim {
            keys: KeyRing::new(),
            world: Mutex::new(world),
            calls: CallLog::default(),
            faults: FaultState::default(),
            credentials: AppCredentials::default(),
            codes: Default::default(),
            base_url,
            config,
        }
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        // A handler that panicked mid-update leaves the world as it was at the panic; a test
        // double keeps serving rather than poisoning every later request.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Entra authority (`login.microsoftonline.com` in Azure).
    pub fn authority(&self) -> &str {
        &self.base_url
    }

    pub fn v2_issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base_url, self.config.tenant_id)
    }

    pub fn v2_issuer_for_keys(&self, multi_tenant: bool) -> String {
        if multi_tenant {
            format!("{}/{{tenantid}}/v2.0", self.base_url)
        } else {
            self.v2_issuer()
        }
    }

    /// Where a vault's data plane is, as ARM reports it (`properties.vaultUri`).
    pub fn vault_uri(&self, vault: &str) -> String {
        format!(
            "https://{}.{}/",
            vault.to_ascii_lowercase(),
            self.config.keyvault_dns_suffix
        )
    }
}
