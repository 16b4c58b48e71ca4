// cmk-rotator: everything `azd up` provisions. Stage 1 of 2: the Key Vault → function event subscription is
// created by infra/key-vault-events.bicep after the code is deployed (see infra/hooks/postdeploy.sh).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all new resources (must offer the Flex Consumption plan).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource id of an existing Key Vault whose keys the rotator manages. Empty: create a new vault with an example CMK.')
param existingKeyVaultResourceId string = ''

@description('Name of the Key Vault\'s Event Grid system topic. Set it when the vault already has one (a vault can have only one).')
param keyVaultSystemTopicName string = ''

@description('Comma-separated ids of the subscriptions whose IoT hubs the rotator may update. Empty: this subscription.')
param hubSubscriptionIds string = ''

@description('Comma-separated resource ids of the resource groups that hold the hubs. Empty: the whole of each hub subscription.')
param hubResourceGroupIds string = ''

@description('Email address that receives rotation-failure alerts. Empty: the alert fires with no email receiver.')
param alertEmailAddress string = ''

@minValue(28)
@maxValue(3650)
@description('Lifetime of new key versions, in days (app setting ROTATOR_DEFAULT_KEY_VALIDITY_DAYS and the example key\'s rotation policy).')
param keyValidityDays int = 90

@minValue(7)
@maxValue(365)
@description('Days before expiry at which a key counts as near expiry: Key Vault\'s KeyNearExpiry for the example key, and the rotator\'s ROTATOR_NEAR_EXPIRY_DAYS.')
param notifyDaysBeforeExpiry int = 30

@minValue(1)
@maxValue(5000)
@description('How many hubs the rotator keeps in flight at once; ARM writes are paced per subscription regardless.')
param hubConcurrency int = 1000

@description('NCRONTAB schedule of the drift reconciliation timer.')
param reconcileSchedule string = '0 0 * * * *'

@description('Creation time of the example key; only its default (the deployment time) is meant to be used.')
param exampleKeyCreatedAt string = utcNow()

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var deploymentSubscriptionId = subscription().subscriptionId

var useExistingVault = !empty(existingKeyVaultResourceId)
// A resource id reads /subscriptions/{id}/resourceGroups/{name}/providers/Microsoft.KeyVault/vaults/{name}.
var keyVaultSubscriptionId = useExistingVault ? split(existingKeyVaultResourceId, '/')[2] : deploymentSubscriptionId
var keyVaultResourceGroupName = useExistingVault ? split(existingKeyVaultResourceId, '/')[4] : rg.name
var keyVaultName = useExistingVault ? last(split(existingKeyVaultResourceId, '/')) : 'kv-${resourceToken}'
var systemTopicName = empty(keyVaultSystemTopicName) ? 'evgs-${keyVaultName}' : keyVaultSystemTopicName

var listedHubSubscriptionIds = filter(map(split(hubSubscriptionIds, ','), id => trim(id)), id => !empty(id))
var targetSubscriptionIds = empty(listedHubSubscriptionIds) ? [deploymentSubscriptionId] : listedHubSubscriptionIds
var targetResourceGroupIds = filter(map(split(hubResourceGroupIds, ','), id => trim(id)), id => !empty(id))

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identities 'modules/identities.bicep' = {
  name: 'identities'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    location: location
    tags: tags
    accountName: 'st${resourceToken}'
    functionPrincipalId: identities.outputs.functionPrincipalId
    eventGridPrincipalId: identities.outputs.eventGridPrincipalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    functionPrincipalId: identities.outputs.functionPrincipalId
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'key-vault-${resourceToken}'
  scope: resourceGroup(keyVaultSubscriptionId, keyVaultResourceGroupName)
  params: {
    createVault: !useExistingVault
    vaultName: keyVaultName
    location: location
    tags: tags
    systemTopicName: systemTopicName
    functionPrincipalId: identities.outputs.functionPrincipalId
    eventGridIdentityId: identities.outputs.eventGridIdentityId
    keyValidityDays: keyValidityDays
    notifyDaysBeforeExpiry: notifyDaysBeforeExpiry
    exampleKeyCreatedAt: exampleKeyCreatedAt
  }
  dependsOn: [
    rg
  ]
}

module outcomes 'modules/outcome-events.bicep' = {
  name: 'outcome-events'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    functionPrincipalId: identities.outputs.functionPrincipalId
    eventGridIdentityId: identities.outputs.eventGridIdentityId
    storageAccountId: storage.outputs.accountId
    failedOutcomesQueueName: storage.outputs.failedOutcomesQueueName
    alertEmailAddress: alertEmailAddress
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    identityId: identities.outputs.functionIdentityId
    identityClientId: identities.outputs.functionClientId
    storageAccountName: storage.outputs.accountName
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    allowedVaultUrls: keyVault.outputs.vaultUrl
    hubSubscriptionIds: join(targetSubscriptionIds, ',')
    outcomeTopicEndpoint: outcomes.outputs.topicEndpoint
    keyValidityDays: keyValidityDays
    nearExpiryDays: notifyDaysBeforeExpiry
    hubConcurrency: hubConcurrency
    reconcileSchedule: reconcileSchedule
  }
}

// Custom role: just enough to re-point a hub's CMK (read the hub, write it back, follow the async PUT).
// Reader (below) already covers reads; the custom role repeats them so it works alone where Reader is not granted.
resource hubKeyUpdaterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'cmk-rotator-iot-hub-key-updater', environmentName)
  properties: {
    roleName: 'CMK Rotator IoT Hub Key Updater (${environmentName}-${resourceToken})'
    description: 'Reads IoT hubs and updates them, so the cmk-rotator can point their encryption at a new key version.'
    type: 'CustomRole'
    permissions: [
      {
        actions: [
          'Microsoft.Devices/IotHubs/read'
          'Microsoft.Devices/IotHubs/write'
          'Microsoft.Devices/locations/operationresults/read'
        ]
        notActions: []
      }
    ]
    assignableScopes: [for id in targetSubscriptionIds: '/subscriptions/${id}']
  }
}

module hubSubscriptionAccess 'modules/hub-subscription-access.bicep' = [
  for (id, i) in targetSubscriptionIds: {
    name: 'hub-subscription-access-${resourceToken}-${i}'
    scope: subscription(id)
    params: {
      principalId: identities.outputs.functionPrincipalId
      hubKeyUpdaterRoleGuid: hubKeyUpdaterRole.name
      grantHubKeyUpdater: empty(targetResourceGroupIds)
    }
  }
]

module hubResourceGroupAccess 'modules/hub-resource-group-access.bicep' = [
  for (id, i) in targetResourceGroupIds: {
    name: 'hub-resource-group-access-${resourceToken}-${i}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      principalId: identities.outputs.functionPrincipalId
      hubKeyUpdaterRoleGuid: hubKeyUpdaterRole.name
    }
  }
]

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.url
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.applicationInsightsConnectionString
output KEY_VAULT_SUBSCRIPTION_ID string = keyVaultSubscriptionId
output KEY_VAULT_RESOURCE_GROUP string = keyVaultResourceGroupName
output KEY_VAULT_NAME string = keyVaultName
output KEY_VAULT_URL string = keyVault.outputs.vaultUrl
output KEY_VAULT_SYSTEM_TOPIC_NAME string = systemTopicName
output EXAMPLE_KEY_NAME string = keyVault.outputs.exampleKeyName
output EVENT_GRID_IDENTITY_ID string = identities.outputs.eventGridIdentityId
output DEAD_LETTER_STORAGE_ACCOUNT_ID string = storage.outputs.accountId
output DEAD_LETTER_CONTAINER_NAME string = storage.outputs.deadLetterContainerName
output OUTCOME_TOPIC_ENDPOINT string = outcomes.outputs.topicEndpoint
output ROTATOR_SUBSCRIPTION_IDS string = join(targetSubscriptionIds, ',')
output HUB_KEY_UPDATER_ROLE_ID string = hubKeyUpdaterRole.id
