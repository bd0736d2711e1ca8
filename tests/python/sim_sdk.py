"""Drives the Azure simulator directly with the official Azure SDKs for Python.

If these SDKs cannot drive it, the simulator is not yet Azure enough. Run by the Rust test
`python_sdk::official_sdks_drive_the_simulator`, which starts a simulator and passes:
SIM_URL, SIM_TENANT, SIM_SUBSCRIPTION, SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_EXPECTED_SECRET,
REQUESTS_CA_BUNDLE. Prints one JSON line describing what it saw; exits non-zero on any failure.
"""

import json
import os
import sys

from azure.core.exceptions import ResourceNotFoundError
from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

ARM_SCOPE = ["https://management.azure.com/.default"]


def main() -> int:
    url = os.environ["SIM_URL"]
    sub = os.environ["SIM_SUBSCRIPTION"]
    cred = ClientSecretCredential(
        os.environ["SIM_TENANT"],
        os.environ["SIM_CLIENT_ID"],
        os.environ["SIM_CLIENT_SECRET"],
        authority=url,
        # The simulator is not a Microsoft cloud MSAL knows; skip its instance discovery.
        disable_instance_discovery=True,
    )
    seen = {}

    resources = ResourceManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    pages = resources.resource_groups.list().by_page()
    page_sizes = [len(list(p)) for p in pages]
    seen["group_pages"] = page_sizes
    seen["groups"] = sorted(g.name for g in resources.resource_groups.list())

    compute = ComputeManagementClient(cred, sub, base_url=url, credential_scopes=ARM_SCOPE)
    poller = compute.virtual_machines.begin_create_or_update(
        "demo-rg",
        "sdk-vm",
        {
            "location": "eastus",
            "hardware_profile": {"vm_size": "Standard_B1s"},
            "os_profile": {
                "computer_name": "sdk-vm",
                "admin_username": "azureuser",
                "admin_password": os.environ["SIM_CLIENT_SECRET"][:12] + "Aa1!",
            },
            "storage_profile": {
                "image_reference": {
                    "publisher": "Canonical",
                    "offer": "ubuntu-24_04-lts",
                    "sku": "server",
                    "version": "latest",
                }
            },
            "network_profile": {"network_interfaces": []},
        },
    )
    vm = poller.result()
    seen["vm_created"] = vm.provisioning_state
    seen["vm_id"] = vm.id
    seen["vm_list"] = sorted(v.name for v in compute.virtual_machines.list("demo-rg"))
    compute.virtual_machines.begin_power_off("demo-rg", "sdk-vm").result()
    view = compute.virtual_machines.instance_view("demo-rg", "sdk-vm")
    seen["vm_power"] = [s.code for s in view.statuses if s.code.startswith("PowerState/")]
    compute.virtual_machines.begin_delete("demo-rg", "sdk-vm").result()
    try:
        compute.virtual_machines.get("demo-rg", "sdk-vm")
        seen["vm_after_delete"] = "still there"
    except ResourceNotFoundError as e:
        seen["vm_after_delete"] = e.error.code if e.error else "ResourceNotFound"

    # The vault by path prefix on a loopback address: the challenge's resource
    # (vault.azure.net) cannot match 127.0.0.1, so the SDK's host check is turned off.
    secrets = SecretClient(
        vault_url=url + "/keyvault/demo-kv",
        credential=cred,
        verify_challenge_resource=False,
    )
    secret = secrets.get_secret("db-password")
    seen["secret_matches"] = secret.value == os.environ["SIM_EXPECTED_SECRET"]
    seen["secret_names"] = sorted(p.name for p in secrets.list_properties_of_secrets())
    created = secrets.set_secret("sdk-written", "written-by-sdk")
    seen["secret_written_version"] = bool(created.properties.version)

    print(json.dumps(seen))
    return 0


if __name__ == "__main__":
    sys.exit(main())
