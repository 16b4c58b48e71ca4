#!/bin/sh
# azd postdeploy hook: stage 2 of the infrastructure. Creates the Key Vault -> keyVaultEvents event subscription,
# which Event Grid validates against the running function, so it can only exist once the code is deployed.
# Needs the Azure CLI, signed in to the same tenant as azd (`az login`). Safe to run again.
set -eu

for name in AZURE_SUBSCRIPTION_ID AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_FUNCTION_APP_ID \
  KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP KEY_VAULT_SYSTEM_TOPIC_NAME EVENT_GRID_IDENTITY_ID \
  DEAD_LETTER_STORAGE_ACCOUNT_ID DEAD_LETTER_CONTAINER_NAME; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "postdeploy: $name is not set; run 'azd provision' (or 'azd up') first." >&2
    exit 1
  fi
done

# The host creates the eventgrid_extension system key when it first loads the Event Grid trigger; a freshly
# deployed Flex app may need a minute. Only whether the key exists is asked for, never its value.
attempt=1
until [ "$(az functionapp keys list --subscription "$AZURE_SUBSCRIPTION_ID" --resource-group "$AZURE_RESOURCE_GROUP" \
  --name "$AZURE_FUNCTION_APP_NAME" --query 'systemKeys.eventgrid_extension != `null`' --output json 2>/dev/null)" = "true" ]; do
  if [ "$attempt" -ge 30 ]; then
    echo "postdeploy: $AZURE_FUNCTION_APP_NAME has no eventgrid_extension key after 5 minutes; is the code deployed?" >&2
    exit 1
  fi
  attempt=$((attempt + 1))
  sleep 10
done

az deployment group create \
  --subscription "$KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID" \
  --resource-group "$KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP" \
  --name "cmk-rotator-key-vault-events-$AZURE_FUNCTION_APP_NAME" \
  --template-file "$(dirname "$0")/../key-vault-events.bicep" \
  --parameters \
    systemTopicName="$KEY_VAULT_SYSTEM_TOPIC_NAME" \
    functionAppResourceId="$AZURE_FUNCTION_APP_ID" \
    deadLetterStorageAccountResourceId="$DEAD_LETTER_STORAGE_ACCOUNT_ID" \
    deadLetterContainerName="$DEAD_LETTER_CONTAINER_NAME" \
    eventGridIdentityResourceId="$EVENT_GRID_IDENTITY_ID" \
  --output none

echo "postdeploy: Key Vault events now reach $AZURE_FUNCTION_APP_NAME/keyVaultEvents."
