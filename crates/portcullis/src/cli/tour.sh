# the demo's URLs, CA, tokens and directory; `portcullis` is the binary the demo runs as
set -a; . .portcullis/demo/demo.env; set +a
PATH=$PORTCULLIS_BIN_DIR:$PATH
alias pc='curl -s --cacert "$PORTCULLIS_CA" -H "x-portcullis-session: tour"'
RG=$PORTCULLIS_URL/subscriptions/$DEMO_SUBSCRIPTION/resourceGroups/demo-rg

# an agent in ai-agents lists demo-rg; the nextLink points back at the gateway
pc -H "Authorization: Bearer $AGENT_TOKEN" "$RG/resources?api-version=2021-04-01" | jq '.value[].name, .nextLink'
# deleting the VM is denied by policy, in ARM's own error shape (AuthorizationFailed)
pc -X DELETE -H "Authorization: Bearer $AGENT_TOKEN" "$RG/providers/Microsoft.Compute/virtualMachines/vm1?api-version=2024-07-01" | jq .error
# an agent in no group is refused; a request with no token gets ARM's 401
pc -H "Authorization: Bearer $OTHER_AGENT_TOKEN" "$RG?api-version=2022-09-01" | jq .error.code
pc "$RG?api-version=2022-09-01" | jq .error.code
# Key Vault through the gateway: the agent reads a secret, but its value arrives masked
pc -H "Authorization: Bearer $AGENT_TOKEN" "$PORTCULLIS_URL/keyvault/demo-kv/secrets/db-password?api-version=7.4" | jq .value
# creating a storage account waits for an approver; after the hold (60 s; this agent will not
# wait) it is answered as Azure answers a long-running create: 202 and a status URL an SDK polls
SA="$RG/providers/Microsoft.Storage/storageAccounts/agentstore?api-version=2023-05-01"
HELD=$(pc -X PUT -H "Authorization: Bearer $AGENT_TOKEN" -H 'content-type: application/json' -d '{"location":"eastus"}' \
   -H 'x-portcullis-wait: 0' -H 'x-portcullis-reason: the nightly export needs a bucket' "$SA" -o /dev/null -D - | tr -d '\r')
echo "$HELD" | grep -iE '^(HTTP|azure-asyncoperation|x-portcullis-approval)'
# alice (PORTCULLIS_TOKEN in demo.env is hers) sees it and approves it, by the id the agent
# was given; or in the browser, in the console the demo printed (sign in as Alice)
portcullis approvals list
portcullis approvals approve "$(echo "$HELD" | grep -i '^x-portcullis-approval:' | cut -d' ' -f2)" --comment 'ok for the demo'
# the same request again (or a poll of the status URL) goes through, once, with the elevated identity
pc -X PUT -H "Authorization: Bearer $AGENT_TOKEN" -H 'content-type: application/json' -d '{"location":"eastus"}' "$SA" -o /dev/null -w '%{http_code}\n'
# why? ask the policy the demo runs, offline
portcullis policy explain --config "$DEMO_DIR/portcullis.yaml" --principal group:ai-agents \
    --request "PUT /subscriptions/$DEMO_SUBSCRIPTION/resourceGroups/demo-rg/providers/Microsoft.Storage/storageAccounts/s1?api-version=2023-05-01"
# what reached "Azure", and as whom: the gateway's identities, never the agent's
curl -s --cacert "$SIM_CA" "$SIM_URL/_sim/calls" | jq -c '.calls[] | {method, path, caller: .caller.name, status}'
# all of it is on the record: the agent's session replayed (bodies masked; the create counts
# as held, then as allowed after approval; a session an agent names is its own:
# tour@<the agent's object id>), then the hash chains verified
portcullis sessions replay "tour@$AGENT_OID" --bodies --state-dir "$DEMO_DIR/state"
portcullis audit verify --state-dir "$DEMO_DIR/state"
# the same trail through the admin API, for approvers (audit.readers)
pc -H "Authorization: Bearer $APPROVER_TOKEN" "$PORTCULLIS_ADMIN_URL/api/sessions" | jq -c '.value[] | {id, requests, allowed, after_approval, held, refused}'
# what operators graph: requests by decision, action and status (Prometheus, on the admin listener)
pc "$PORTCULLIS_ADMIN_URL/metrics" | grep '^portcullis_requests_total'
# an unmodified az CLI as the agent: exec hands it the token. This step needs az, on PATH or
# in .venv-az, and *.localhost names resolving here (README.md, "Two commands"). To make
# .venv-az, once, in the repository (a few minutes):
#   python3 -m venv .venv-az && .venv-az/bin/pip install -r tests/python/requirements-az.txt
portcullis exec --token-command 'printf %s "$AGENT_TOKEN"' -- sh -c 'PATH=$PWD/.venv-az/bin:$PATH
  az login --identity --allow-no-subscriptions -o none
  az keyvault secret show --vault-name demo-kv -n db-password --query value   # masked
  az vm delete -g demo-rg -n vm1 --yes'                                       # refused
