// cmk-rotator: everything `azd up` provisions. Stage 1 of 2: the Key Vault → function event subscription is
// created by infra/key-vault-events.bicep after the code is deployed (see infra/hooks/postdeploy.sh).
targetScope = 'subscription'

import { hubSubscriptionList, idList } from 'modules/shared.bicep'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of every resource name.')
param environmentName string

@minLength(1)
@description('Region for all new resources (must offer the Flex Consumption plan).')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource id of an existing Key Vault whose keys the rotator manages (any resource group or subscription). Empty: create a new vault with an example CMK.')
param existingKeyVaultResourceId string = ''

@description('Resource id of the existing vault\'s Event Grid system topic, when it has one (a vault can have only one; it may live in another resource group). Its identities and tags are kept: Event Grid\'s identity is added. Empty: create evgs-<vault name> in the vault\'s resource group.')
param existingKeyVaultSystemTopicResourceId string = ''

@description('Comma-separated ids of the subscriptions whose IoT hubs the rotator may update. Empty: this subscription.')
param hubSubscriptionIds string = ''

@description('Comma-separated resource ids of the resource groups that hold the hubs. Empty: the whole of each hub subscription.')
param hubResourceGroupIds string = ''

@description('Email address that receives rotation-failure alerts. Empty: the alert fires with no email receiver.')
param alertEmailAddress string = ''

@minValue(28)
@maxValue(3650)
@description('Lifetime of new key versions, in days (app setting ROTATOR_DEFAULT_KEY_VALIDITY_DAYS and the example key\'s rotation policy, which is set only when the key is created). Must exceed notifyDaysBeforeExpiry.')
param keyValidityDays int = 90

@minValue(7)
@maxValue(365)
@description('Days before expiry at which a key counts as near expiry: Key Vault\'s KeyNearExpiry for the example key (set only when the key is created), and the rotator\'s ROTATOR_NEAR_EXPIRY_DAYS. Must be less than keyValidityDays.')
param notifyDaysBeforeExpiry int = 30

@description('NCRONTAB schedule of the drift reconciliation timer.')
param reconcileSchedule string = '0 0 * * * *'

@description('Client id of an Entra ID app registration for operator sign-in: App Service Authentication then stands in front of the app, and operators sign in (dashboard) or bring an Entra ID token (API) instead of a function key. Empty: function keys.')
param operatorSignInClientId string = ''

@description('Tenant of that app registration. Default: this deployment\'s tenant.')
param operatorSignInTenantId string = tenant().tenantId

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

// A vault has at most one system topic: the existing one is kept where it is, or a new one goes beside the vault.
var useExistingSystemTopic = !empty(existingKeyVaultSystemTopicResourceId)
var systemTopicSubscriptionId = useExistingSystemTopic ? split(existingKeyVaultSystemTopicResourceId, '/')[2] : keyVaultSubscriptionId
var systemTopicResourceGroupName = useExistingSystemTopic ? split(existingKeyVaultSystemTopicResourceId, '/')[4] : keyVaultResourceGroupName
var systemTopicName = useExistingSystemTopic ? last(split(existingKeyVaultSystemTopicResourceId, '/')) : 'evgs-${keyVaultName}'

var targetSubscriptionIds = hubSubscriptionList(hubSubscriptionIds, deploymentSubscriptionId)
var targetResourceGroupIds = idList(hubResourceGroupIds)

// Near expiry must come before expiry: otherwise every new version is near expiry when created, Key Vault refuses the
// example key's policy, and the reconciler would rotate again and again. Bicep's `assert` is still experimental, so an
// invalid pair stops the deployment at validation, before anything is created, with this text as ARM's error
// ("The language expression property '<text>' doesn't exist").
var nearExpiryDays = notifyDaysBeforeExpiry < keyValidityDays
  ? notifyDaysBeforeExpiry
  : any({})['notifyDaysBeforeExpiry (${notifyDaysBeforeExpiry}) must be less than keyValidityDays (${keyValidityDays})']

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
    functionPrincipalId: identities.outputs.functionPrincipalId
    keyValidityDays: keyValidityDays
    notifyDaysBeforeExpiry: nearExpiryDays
    exampleKeyCreatedAt: exampleKeyCreatedAt
  }
}

// Key Vault's events come from this system topic, created beside the vault (in the vault's region)...
module newSystemTopic 'modules/key-vault-system-topic.bicep' = if (!useExistingSystemTopic) {
  name: 'key-vault-system-topic-${resourceToken}'
  scope: resourceGroup(systemTopicSubscriptionId, systemTopicResourceGroupName)
  params: {
    name: systemTopicName
    location: keyVault.outputs.location
    tags: tags
    vaultId: keyVault.outputs.vaultId
    identityType: 'UserAssigned'
    userAssignedIdentityIds: [identities.outputs.eventGridIdentityId]
  }
}

// ...or the vault's existing one, wherever it lives, given Event Grid's identity on top of what it has.
module existingSystemTopic 'modules/existing-system-topic.bicep' = if (useExistingSystemTopic) {
  name: 'existing-system-topic-${resourceToken}'
  scope: resourceGroup(systemTopicSubscriptionId, systemTopicResourceGroupName)
  params: {
    name: systemTopicName
    eventGridIdentityId: identities.outputs.eventGridIdentityId
    expectedSourceId: keyVault.outputs.vaultId
  }
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
    storageEndpoints: storage.outputs.endpoints
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.applicationInsightsConnectionString
    allowedVaultUrls: keyVault.outputs.vaultUrl
    hubSubscriptionIds: join(targetSubscriptionIds, ',')
    outcomeTopicEndpoint: outcomes.outputs.topicEndpoint
    keyValidityDays: keyValidityDays
    nearExpiryDays: nearExpiryDays
    reconcileSchedule: reconcileSchedule
    operatorSignInClientId: operatorSignInClientId
    operatorSignInTenantId: operatorSignInTenantId
  }
}

// The custom role for re-pointing hubs (the azd preprovision hook creates it first, see the module).
module hubKeyUpdaterRole 'modules/hub-key-updater-role.bicep' = {
  name: 'hub-key-updater-role-${resourceToken}'
  params: {
    environmentName: environmentName
    location: location
    hubSubscriptionIds: hubSubscriptionIds
  }
}

// The assignments wait for the function app as well, which gives a role definition created in this same deployment
// (a path without the preprovision hook) a few minutes to propagate before it is assigned.
module hubSubscriptionAccess 'modules/hub-subscription-access.bicep' = [
  for (id, i) in targetSubscriptionIds: {
    name: 'hub-subscription-access-${resourceToken}-${i}'
    scope: subscription(id)
    params: {
      principalId: identities.outputs.functionPrincipalId
      hubKeyUpdaterRoleGuid: hubKeyUpdaterRole.outputs.roleDefinitionGuid
      grantHubKeyUpdater: empty(targetResourceGroupIds)
    }
    dependsOn: [
      functionApp
    ]
  }
]

module hubResourceGroupAccess 'modules/hub-resource-group-access.bicep' = [
  for (id, i) in targetResourceGroupIds: {
    name: 'hub-resource-group-access-${resourceToken}-${i}'
    scope: resourceGroup(split(id, '/')[2], split(id, '/')[4])
    params: {
      principalId: identities.outputs.functionPrincipalId
      hubKeyUpdaterRoleGuid: hubKeyUpdaterRole.outputs.roleDefinitionGuid
    }
    dependsOn: [
      functionApp
    ]
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
output KEY_VAULT_SYSTEM_TOPIC_SUBSCRIPTION_ID string = systemTopicSubscriptionId
output KEY_VAULT_SYSTEM_TOPIC_RESOURCE_GROUP string = systemTopicResourceGroupName
output KEY_VAULT_SYSTEM_TOPIC_NAME string = systemTopicName
output EXAMPLE_KEY_NAME string = keyVault.outputs.exampleKeyName
output EVENT_GRID_IDENTITY_ID string = identities.outputs.eventGridIdentityId
output AZURE_FUNCTION_PRINCIPAL_ID string = identities.outputs.functionPrincipalId
output DEAD_LETTER_STORAGE_ACCOUNT_ID string = storage.outputs.accountId
output DEAD_LETTER_CONTAINER_NAME string = storage.outputs.deadLetterContainerName
output OUTCOME_TOPIC_ENDPOINT string = outcomes.outputs.topicEndpoint
output ROTATOR_SUBSCRIPTION_IDS string = join(targetSubscriptionIds, ',')
output ROTATOR_HUB_RESOURCE_GROUP_SCOPES string = join(targetResourceGroupIds, ',')
output HUB_KEY_UPDATER_ROLE_ID string = hubKeyUpdaterRole.outputs.roleDefinitionId
