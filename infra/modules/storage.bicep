// The function app's storage, reached by Entra ID only (shared keys off): host state, the app's audit table and
// blobs, its hub-steps work queue, the Flex Consumption deployment package, Event Grid dead letters and the
// failed-outcomes queue.
param location string
param tags object
param accountName string
param functionPrincipalId string
param eventGridPrincipalId string

var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-dead-letters'
var failedOutcomesQueueName = 'failed-outcomes'
// The app's per-hub work queue and the poison queue the Functions host moves messages to after too many failures
// (names fixed in the app's code). Created here so they exist before the first message.
var appQueueNames = [
  'hub-steps'
  'hub-steps-poison'
]

resource account 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: accountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deploymentContainerName
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deadLetterContainerName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2024-01-01' = {
  parent: account
  name: 'default'
}

resource failedOutcomesQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = {
  parent: queueService
  name: failedOutcomesQueueName
}

resource appQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2024-01-01' = [
  for name in appQueueNames: {
    parent: queueService
    name: name
  }
]

// The host's identity-based AzureWebJobsStorage needs Blob Data Owner (coordination, timer locks, key store, and the
// Flex deployment package); the app keeps its rotation history in tables, which also hold host diagnostic events.
resource functionBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b')
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b') // Storage Blob Data Owner
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3')
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3') // Storage Table Data Contributor
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// The app's queue trigger and its code read, add, delete and poison hub-steps messages.
resource functionQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, functionPrincipalId, '974c5e8b-45b9-4653-ba55-5f855dd0fb88')
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '974c5e8b-45b9-4653-ba55-5f855dd0fb88') // Storage Queue Data Contributor
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid writes undeliverable Key Vault events into the dead-letter container only.
resource eventGridDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, eventGridPrincipalId, 'ba92f5b4-2d11-453d-a403-e96b0029c9fe')
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'ba92f5b4-2d11-453d-a403-e96b0029c9fe') // Storage Blob Data Contributor
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Event Grid delivers failure outcomes into the failed-outcomes queue only.
resource eventGridQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(failedOutcomesQueue.id, eventGridPrincipalId, 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a')
  scope: failedOutcomesQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a') // Storage Queue Data Message Sender
    principalId: eventGridPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output accountId string = account.id
output accountName string = account.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
output deadLetterContainerName string = deadLetterContainerName
output failedOutcomesQueueName string = failedOutcomesQueueName
output appQueueNames string[] = [for (name, i) in appQueueNames: appQueues[i].name]
// The cloud's own endpoints (sovereign clouds differ), for the app's identity-based AzureWebJobsStorage settings.
output endpoints object = {
  blob: account.properties.primaryEndpoints.blob
  queue: account.properties.primaryEndpoints.queue
  table: account.properties.primaryEndpoints.table
}
