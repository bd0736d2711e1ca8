"""An agent written with the official Azure SDKs and their default managed-identity
credential, unmodified except for `base_url`: run by the Rust test `exec::*` through
`portcullis exec`, which supplies IDENTITY_ENDPOINT / IDENTITY_HEADER (the agent's gateway
token), REQUESTS_CA_BUNDLE (the gateway's CA) and PORTCULLIS_URL. AGENT_SUBSCRIPTION names
the subscription. Prints one JSON line describing what it saw; exits non-zero on any
unexpected failure.
"""

import json
import os

from azure.core.exceptions import HttpResponseError
from azure.identity import ManagedIdentityCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.storage import StorageManagementClient

ARM_SCOPE = ["https://management.azure.com/.default"]


def held(url: str, sub: str, cred) -> dict:
    """A storage account create the policy holds for approval: the SDK's request waits, held
    open by the gateway, until an approver (another process) consents; then the poller
    completes it."""
    storage = StorageManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    account = storage.storage_accounts.begin_create(
        "demo-rg",
        "agentheldsa",
        {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
        headers={"x-portcullis-reason": "the agent needs a bucket"},
    ).result()
    return {"held": {"name": account.name, "state": account.provisioning_state}}


def create_and_delete(url: str, sub: str, cred) -> dict:
    """A VM created and deleted where policy allows both: each through the SDK's poller."""
    compute = ComputeManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    vm = compute.virtual_machines.begin_create_or_update(
        "shared-rg",
        "agent-scratch-vm",
        {"location": "eastus", "hardware_profile": {"vm_size": "Standard_B1s"}},
    ).result()
    compute.virtual_machines.begin_delete("shared-rg", "agent-scratch-vm").result()
    left = [v.name for v in compute.virtual_machines.list("shared-rg")]
    return {"created": vm.provisioning_state, "left": left}


def failure(e: HttpResponseError) -> dict:
    """The SDK's own error, as an agent's code would see it."""
    return {
        "error": {
            "status": e.status_code,
            "code": e.error.code if e.error else None,
            "message": str(e.message)[:500],
        }
    }


def lro_create(url: str, sub: str, cred) -> dict:
    """A storage account create held for approval beyond the gateway's hold: the gateway
    answers 202 as Azure answers a long-running create, and the SDK's own poller waits for
    the approver."""
    storage = StorageManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    name = os.environ["AGENT_RESOURCE"]
    try:
        account = storage.storage_accounts.begin_create(
            "shared-rg",
            name,
            {"location": "eastus", "sku": {"name": "Standard_LRS"}, "kind": "StorageV2"},
        ).result()
    except HttpResponseError as e:
        return failure(e)
    return {"name": account.name, "state": account.provisioning_state}


def lro_vm_create(url: str, sub: str, cred) -> dict:
    """A VM create held for approval beyond the hold: the gateway answers 201 (as ARM does
    for compute PUTs) and the SDK's poller waits, then reads the VM."""
    compute = ComputeManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    try:
        vm = compute.virtual_machines.begin_create_or_update(
            "shared-rg",
            os.environ["AGENT_RESOURCE"],
            {"location": "eastus", "hardware_profile": {"vm_size": "Standard_B1s"}},
        ).result()
    except HttpResponseError as e:
        return failure(e)
    return {"name": vm.name, "state": vm.provisioning_state}


def lro_delete(url: str, sub: str, cred) -> dict:
    """A VM the agent may create, whose delete is held for approval: the SDK's delete
    poller waits for the approver."""
    compute = ComputeManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    name = os.environ["AGENT_RESOURCE"]
    compute.virtual_machines.begin_create_or_update(
        "shared-rg",
        name,
        {"location": "eastus", "hardware_profile": {"vm_size": "Standard_B1s"}},
    ).result()
    try:
        compute.virtual_machines.begin_delete("shared-rg", name).result()
    except HttpResponseError as e:
        return failure(e)
    return {"left": [v.name for v in compute.virtual_machines.list("shared-rg")]}


def main() -> int:
    url = os.environ["PORTCULLIS_URL"]
    sub = os.environ["AGENT_SUBSCRIPTION"]
    cred = ManagedIdentityCredential()
    scenario = os.environ.get("AGENT_SCENARIO")
    if scenario == "held":
        print(json.dumps(held(url, sub, cred)))
        return 0
    if scenario == "create-and-delete":
        print(json.dumps(create_and_delete(url, sub, cred)))
        return 0
    if scenario == "lro-create":
        print(json.dumps(lro_create(url, sub, cred)))
        return 0
    if scenario == "lro-vm-create":
        print(json.dumps(lro_vm_create(url, sub, cred)))
        return 0
    if scenario == "lro-delete":
        print(json.dumps(lro_delete(url, sub, cred)))
        return 0
    seen = {}

    resources = ResourceManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    # The subscription's resource groups, two to a page.
    group_pages = [[g.name for g in page] for page in resources.resource_groups.list().by_page()]
    seen["groups"] = sorted(n for page in group_pages for n in page)
    seen["group_pages"] = len(group_pages)

    # The SDK's pager follows the nextLinks the gateway rewrote (and bound to this agent).
    pages = resources.resources.list_by_resource_group("demo-rg").by_page()
    names = []
    page_count = 0
    for page in pages:
        page_count += 1
        names.extend(r.name for r in page)
    seen["resources"] = sorted(names)
    seen["pages"] = page_count

    compute = ComputeManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    # A create the policy allows: the SDK's poller follows the rewritten Azure-AsyncOperation.
    vm = compute.virtual_machines.begin_create_or_update(
        "demo-rg",
        "agent-sdk-vm",
        {"location": "eastus", "hardware_profile": {"vm_size": "Standard_B1s"}},
    ).result()
    seen["created"] = {"name": vm.name, "state": vm.provisioning_state}

    storage = StorageManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    keys = storage.storage_accounts.list_keys("demo-rg", "demostorage01")
    # (the result model's `keys` attribute is shadowed by the mapping method of that name)
    seen["storage_key"] = keys.as_dict()["keys"][0]["value"]

    # Key Vault by path: the challenge names Key Vault's resource, not the gateway's host, so
    # the SDK's host check must be turned off (docs/agents.md says why).
    secrets = SecretClient(
        vault_url=f"{url}/keyvault/demo-kv",
        credential=cred,
        verify_challenge_resource=False,
    )
    seen["secret"] = secrets.get_secret("db-password").value

    # Key Vault by host name (`{vault}.vault.{public_host}`) with the SDK's default settings:
    # the challenge names `https://vault.{public_host}`, which the request's host ends with.
    vault_url = os.environ.get("AGENT_VAULT_URL")
    if vault_url:
        by_host = SecretClient(vault_url=vault_url, credential=cred)
        seen["secret_by_host"] = by_host.get_secret("db-password").value
        seen["secret_names_by_host"] = sorted(p.name for p in by_host.list_properties_of_secrets())

    try:
        compute.virtual_machines.begin_delete("demo-rg", "vm1").result()
        seen["delete"] = {"status": 200}
    except HttpResponseError as e:
        seen["delete"] = {
            "status": e.status_code,
            "code": e.error.code if e.error else None,
            "message": str(e.message)[:300],
        }

    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
