#!/bin/sh
# azd preprovision hook: what must be true, or done, before infra/main.bicep runs.
#  1. The deployment subscription has the Microsoft.App resource provider (Flex Consumption runs on it).
#  2. Narrowing the hub scopes (fewer subscriptions, or resource groups instead of whole subscriptions) removes the
#     rotator's access that a redeploy would otherwise leave behind: incremental deployments delete nothing, and the
#     custom role cannot drop a subscription that still holds assignments of it.
#  3. The custom hub role exists, and every hub subscription sees it, before main.bicep assigns it (role definitions
#     are eventually consistent: a fresh one may be reported missing for a while).
# Needs the Azure CLI, signed in to the same tenant as azd (`az login`). Safe to run again; nothing secret is printed.
set -eu

for name in AZURE_ENV_NAME AZURE_LOCATION AZURE_SUBSCRIPTION_ID; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "preprovision: $name is not set; run this through azd (azd provision / azd up) or export it." >&2
    exit 1
  fi
done

READER_ROLE=acdd72a7-3385-48ef-bd42-f606fba81ae7
WAIT_SECONDS=${ROTATOR_ROLE_WAIT_SECONDS:-10}

# A comma-separated list, one trimmed lower-case entry per line.
entries() {
  printf '%s\n' "$1" | tr ',' '\n' | sed 's/^[[:space:]]*//; s/[[:space:]]*$//' | grep -v '^$' | tr 'A-Z' 'a-z' || true
}
contains() { printf '%s\n' "$1" | grep -Fqx "$2"; }

# 1. Microsoft.App
state=$(az provider show --namespace Microsoft.App --subscription "$AZURE_SUBSCRIPTION_ID" \
  --query registrationState --output tsv 2>/dev/null || echo Unknown)
if [ "$state" != "Registered" ]; then
  cat >&2 <<EOF
preprovision: the Microsoft.App resource provider is "$state" in subscription $AZURE_SUBSCRIPTION_ID.
The Flex Consumption plan needs it. Register it once (it takes a few minutes), then run azd up again:
  az provider register --namespace Microsoft.App --subscription $AZURE_SUBSCRIPTION_ID --wait
EOF
  exit 1
fi

# What this provision will grant.
hub_subscriptions=$(entries "${ROTATOR_HUB_SUBSCRIPTION_IDS:-}")
[ -n "$hub_subscriptions" ] || hub_subscriptions=$(entries "$AZURE_SUBSCRIPTION_ID")
hub_resource_groups=$(entries "${ROTATOR_HUB_RESOURCE_GROUP_IDS:-}")

# 2. Narrowing: only after an earlier provision, whose outputs name the role, the identity and the old subscriptions.
role_id=${HUB_KEY_UPDATER_ROLE_ID:-}
principal=${AZURE_FUNCTION_PRINCIPAL_ID:-}
if [ -n "$role_id" ] && [ -n "$principal" ]; then
  tab=$(printf '\t')
  for subscription in $(entries "${ROTATOR_SUBSCRIPTION_IDS:-}"); do
    # The hub role's assignments to the rotator anywhere in that subscription, as "scope<TAB>id" lines.
    assignments=$(az role assignment list --subscription "$subscription" --all --role "$role_id" \
      --query "[?principalId=='$principal'].[scope, id]" --output tsv)
    while IFS="$tab" read -r scope id; do
      [ -n "$id" ] || continue
      scope_lower=$(printf '%s' "$scope" | tr 'A-Z' 'a-z')
      if [ -z "$hub_resource_groups" ]; then
        contains "$hub_subscriptions" "$subscription" && [ "$scope_lower" = "/subscriptions/$subscription" ] && continue
      else
        contains "$hub_resource_groups" "$scope_lower" && continue
      fi
      echo "preprovision: removing the hub role's assignment on $scope (no longer in the hub scopes)"
      az role assignment delete --ids "$id" --output none
    done <<EOF
$assignments
EOF
    contains "$hub_subscriptions" "$subscription" && continue
    readers=$(az role assignment list --subscription "$subscription" --role "$READER_ROLE" \
      --scope "/subscriptions/$subscription" --query "[?principalId=='$principal'].id" --output tsv)
    for id in $readers; do
      echo "preprovision: removing the rotator's Reader on /subscriptions/$subscription (no longer a hub subscription)"
      az role assignment delete --ids "$id" --output none
    done
  done
fi

# 3. The custom role, from the same module main.bicep deploys, then wait until each hub subscription can see it.
role_guid=$(az deployment sub create \
  --subscription "$AZURE_SUBSCRIPTION_ID" \
  --location "$AZURE_LOCATION" \
  --name "cmk-rotator-role-$AZURE_ENV_NAME" \
  --template-file "$(dirname "$0")/../modules/hub-key-updater-role.bicep" \
  --parameters \
    environmentName="$AZURE_ENV_NAME" \
    location="$AZURE_LOCATION" \
    hubSubscriptionIds="${ROTATOR_HUB_SUBSCRIPTION_IDS:-}" \
  --query properties.outputs.roleDefinitionGuid.value --output tsv)
for subscription in $hub_subscriptions; do
  attempt=1
  until [ "$(az role definition list --scope "/subscriptions/$subscription" --name "$role_guid" --custom-role-only true \
    --query 'length(@)' --output tsv 2>/dev/null)" = "1" ]; do
    if [ "$attempt" -ge 30 ]; then
      echo "preprovision: subscription $subscription still does not see role $role_guid; run azd provision again in a few minutes." >&2
      exit 1
    fi
    attempt=$((attempt + 1))
    sleep "$WAIT_SECONDS"
  done
done
echo "preprovision: Microsoft.App registered; hub role $role_guid visible in $(printf '%s\n' "$hub_subscriptions" | wc -l | tr -d ' ') subscription(s)."
