# azd postdeploy hook (Windows): same as postdeploy.sh. Creates the Key Vault -> keyVaultEvents event subscription,
# which Event Grid validates against the running function, so it can only exist once the code is deployed.
# Needs the Azure CLI, signed in to the same tenant as azd (`az login`). Safe to run again.
$ErrorActionPreference = 'Stop'

$required = 'AZURE_SUBSCRIPTION_ID', 'AZURE_RESOURCE_GROUP', 'AZURE_FUNCTION_APP_NAME', 'AZURE_FUNCTION_APP_ID', 'KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID',
  'KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP', 'KEY_VAULT_SYSTEM_TOPIC_NAME', 'EVENT_GRID_IDENTITY_ID', 'DEAD_LETTER_STORAGE_ACCOUNT_ID',
  'DEAD_LETTER_CONTAINER_NAME'
foreach ($name in $required) {
  if (-not [Environment]::GetEnvironmentVariable($name)) {
    throw "postdeploy: $name is not set; run 'azd provision' (or 'azd up') first."
  }
}

# The host creates the eventgrid_extension system key when it first loads the Event Grid trigger; a freshly
# deployed Flex app may need a minute. Only whether the key exists is asked for, never its value.
$attempt = 1
while ((az functionapp keys list --subscription $env:AZURE_SUBSCRIPTION_ID --resource-group $env:AZURE_RESOURCE_GROUP `
      --name $env:AZURE_FUNCTION_APP_NAME --query 'systemKeys.eventgrid_extension != `null`' --output json 2>$null) -ne 'true') {
  if ($attempt -ge 30) {
    throw "postdeploy: $env:AZURE_FUNCTION_APP_NAME has no eventgrid_extension key after 5 minutes; is the code deployed?"
  }
  $attempt++
  Start-Sleep -Seconds 10
}

az deployment group create `
  --subscription $env:KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID `
  --resource-group $env:KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP `
  --name "cmk-rotator-key-vault-events-$env:AZURE_FUNCTION_APP_NAME" `
  --template-file (Join-Path $PSScriptRoot '..' 'key-vault-events.bicep') `
  --parameters `
    systemTopicName=$env:KEY_VAULT_SYSTEM_TOPIC_NAME `
    functionAppResourceId=$env:AZURE_FUNCTION_APP_ID `
    deadLetterStorageAccountResourceId=$env:DEAD_LETTER_STORAGE_ACCOUNT_ID `
    deadLetterContainerName=$env:DEAD_LETTER_CONTAINER_NAME `
    eventGridIdentityResourceId=$env:EVENT_GRID_IDENTITY_ID `
  --output none
if ($LASTEXITCODE -ne 0) { throw "postdeploy: the event subscription deployment failed." }

Write-Host "postdeploy: Key Vault events now reach $env:AZURE_FUNCTION_APP_NAME/keyVaultEvents."
