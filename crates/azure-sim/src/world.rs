//! The in-memory "Azure": resource groups, resources, long-running operations, storage keys
//! and Key Vault contents, with the deterministic seed every simulator starts from.
//!
//! Maps are keyed by lowercased ids because ARM names are case-insensitive; the stored
//! bodies keep the casing the resource was created with.

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256, Sha512};

use crate::config::SimConfig;
use crate::keyvault::Vault;

/// The region every seeded resource lives in.
pub const SEED_LOCATION: &str = "eastus";
pub const DEMO_RG: &str = "demo-rg";
pub const DEMO_VM: &str = "vm1";
pub const DEMO_STORAGE: &str = "demostorage01";
pub const DEMO_VAULT: &str = "demo-kv";

/// A long-running operation, advanced by its status polls.
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    /// Provider namespace and location its status URLs live under.
    pub namespace: String,
    pub location: String,
    /// Polls still answered `InProgress`.
    pub polls_left: u32,
    pub done: bool,
    pub effect: Effect,
    pub start_time: String,
    pub end_time: Option<String>,
}

/// What completing an operation does to the world.
#[derive(Debug, Clone)]
pub enum Effect {
    /// The resource's `provisioningState` becomes `Succeeded`; its body is the final result.
    Provision { resource: String },
    /// The resource and its children are removed.
    Delete { resource: String },
    /// The resource group and everything in it are removed.
    DeleteGroup { group: String },
    /// A VM's power state changes.
    Power {
        resource: String,
        state: &'static str,
    },
}

impl Effect {
    pub fn resource_key(&self) -> Option<&str> {
        match self {
            Effect::Provision { resource }
            | Effect::Delete { resource }
            | Effect::Power { resource, .. } => Some(resource),
            Effect::DeleteGroup { .. } => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageKey {
    pub name: &'static str,
    pub value: String,
    pub created: String,
}

pub struct World {
    pub tenant_id: String,
    pub subscription_id: String,
    pub subscription_name: String,
    /// Lowercased group name → the group's body.
    pub groups: BTreeMap<String, Value>,
    /// Lowercased resource id → the resource's body.
    pub resources: BTreeMap<String, Value>,
    pub operations: HashMap<String, Operation>,
    /// Lowercased storage account id → its two keys.
    pub storage_keys: HashMap<String, Vec<StorageKey>>,
    /// Lowercased VM id → power state (`running`, `stopped`, `deallocated`).
    pub power: HashMap<String, &'static str>,
    /// Lowercased vault name → its data plane.
    pub vaults: BTreeMap<String, Vault>,
    /// Bumped on every key regeneration so each new key differs.
    pub key_generation: u64,
    pub keyvault_dns_suffix: String,
}

pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A value derived from a label: deterministic across runs, unguessable-looking, and fake.
pub fn derived_secret(label: &str) -> String {
    let digest = Sha256::digest(format!("azure-sim seed/{label}").as_bytes());
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()[..24]
        .to_owned()
}

impl World {
    pub fn group_id(&self, name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{name}",
            self.subscription_id
        )
    }

    pub fn group_body(&self, name: &str, location: &str, tags: Option<&Value>) -> Value {
        let mut body = json!({
            "id": self.group_id(name),
            "name": name,
            "type": "Microsoft.Resources/resourceGroups",
            "location": location,
            "properties": {"provisioningState": "Succeeded"},
        });
        if let Some(tags) = tags.filter(|t| t.is_object()) {
            body["tags"] = tags.clone();
        }
        body
    }

    /// A new storage account key: 64 bytes as base64 (88 characters), as Azure's are.
    pub fn new_storage_key(&mut self, account_id: &str, name: &'static str) -> StorageKey {
        self.key_generation += 1;
        let digest = Sha512::digest(
            format!(
                "storage-key/{}/{name}/{}",
                account_id.to_ascii_lowercase(),
                self.key_generation
            )
            .as_bytes(),
        );
        StorageKey {
            name,
            value: base64::engine::general_purpose::STANDARD.encode(digest),
            created: now_rfc3339(),
        }
    }

    /// The seed: `demo-rg` with a VM, a storage account and a key vault holding secrets,
    /// plus two more groups so the group list always pages.
    pub fn seeded(config: &SimConfig) -> World {
        let mut w = World {
            tenant_id: config.tenant_id.to_string(),
            subscription_id: config.subscription_id.to_string(),
            subscription_name: config.subscription_name.clone(),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            operations: HashMap::new(),
            storage_keys: HashMap::new(),
            power: HashMap::new(),
            vaults: BTreeMap::new(),
            key_generation: 0,
            keyvault_dns_suffix: config.keyvault_dns_suffix.clone(),
        };
        for (name, tags) in [
            (DEMO_RG, json!({"environment": "demo"})),
            ("shared-rg", json!({})),
            ("network-rg", json!({})),
        ] {
            let body = w.group_body(name, SEED_LOCATION, Some(&tags));
            w.groups.insert(name.to_owned(), body);
        }
        let rg_id = w.group_id(DEMO_RG);
        let created = now_rfc3339();

        let vm_id = format!("{rg_id}/providers/Microsoft.Compute/virtualMachines/{DEMO_VM}");
        w.resources.insert(
            vm_id.to_ascii_lowercase(),
            json!({
                "id": vm_id,
                "name": DEMO_VM,
                "type": "Microsoft.Compute/virtualMachines",
                "location": SEED_LOCATION,
                "tags": {"role": "demo"},
                "properties": {
                    "vmId": crate::config::derived_id("vm", &vm_id),
                    "hardwareProfile": {"vmSize": "Standard_B2s"},
                    "storageProfile": {
                        "imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"},
                        "osDisk": {"osType": "Linux", "name": "vm1-osdisk", "createOption": "FromImage", "caching": "ReadWrite", "managedDisk": {"storageAccountType": "Premium_LRS"}, "diskSizeGB": 30},
                        "dataDisks": []
                    },
                    "osProfile": {"computerName": DEMO_VM, "adminUsername": "azureuser", "linuxConfiguration": {"disablePasswordAuthentication": true}},
                    "networkProfile": {"networkInterfaces": [{"id": format!("{rg_id}/providers/Microsoft.Network/networkInterfaces/vm1-nic")}]},
                    "provisioningState": "Succeeded",
                    "timeCreated": created,
                }
            }),
        );
        w.power.insert(vm_id.to_ascii_lowercase(), "running");

        let sa_id = format!("{rg_id}/providers/Microsoft.Storage/storageAccounts/{DEMO_STORAGE}");
        let sa_body = crate::arm::storage::account_body(
            &sa_id,
            DEMO_STORAGE,
            SEED_LOCATION,
            &json!({}),
            &created,
        );
        w.resources.insert(sa_id.to_ascii_lowercase(), sa_body);
        let keys = vec![
            w.new_storage_key(&sa_id, "key1"),
            w.new_storage_key(&sa_id, "key2"),
        ];
        let connection_string = format!(
            "DefaultEndpointsProtocol=https;AccountName={DEMO_STORAGE};AccountKey={};EndpointSuffix=core.windows.net",
            keys[0].value
        );
        w.storage_keys.insert(sa_id.to_ascii_lowercase(), keys);

        let kv_id = format!("{rg_id}/providers/Microsoft.KeyVault/vaults/{DEMO_VAULT}");
        let kv_body =
            crate::arm::keyvault::vault_body(&w, &kv_id, DEMO_VAULT, SEED_LOCATION, &json!({}));
        w.resources.insert(kv_id.to_ascii_lowercase(), kv_body);
        let mut vault = Vault::new(DEMO_VAULT);
        vault.set(
            "db-password",
            &format!("Sim-{}", derived_secret("db-password")),
            None,
            json!({"purpose": "demo database"}),
        );
        vault.set(
            "openai-api-key",
            &format!("sk-sim-{}", derived_secret("openai-api-key")),
            None,
            json!({}),
        );
        vault.set(
            "storage-connection-string",
            &connection_string,
            Some("text/plain"),
            json!({}),
        );
        w.vaults.insert(DEMO_VAULT.to_owned(), vault);
        w
    }
}
