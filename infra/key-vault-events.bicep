// Stage 2 of 2, deployed into the system topic's resource group by infra/hooks/postdeploy.sh once the code is deployed:
// the Key Vault system topic's subscription that delivers key events to the keyVaultEvents function.
//
// Endpoint: a WebHook to the host's Event Grid extension with its `eventgrid_extension` system key, the pattern
// the Flex Consumption samples and tutorials use for Event Grid-fed functions. Either endpoint type is validated
// by Event Grid at creation, which only succeeds once the function is deployed and its host has loaded the Event
// Grid extension (which also creates that key) - hence the second stage.
targetScope = 'resourceGroup'

@description('The Key Vault system topic (in this resource group).')
param systemTopicName string

@description('Resource id of the function app.')
param functionAppResourceId string

@description('Resource id of the storage account that receives dead letters.')
param deadLetterStorageAccountResourceId string

param deadLetterContainerName string

@description('Resource id of the user-assigned identity the system topic carries, used to write dead letters.')
param eventGridIdentityResourceId string

// The function's name as registered with app.eventGrid(...).
var functionName = 'keyVaultEvents'

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: systemTopicName
}

resource functionApp 'Microsoft.Web/sites@2024-11-01' existing = {
  name: last(split(functionAppResourceId, '/'))
  scope: resourceGroup(split(functionAppResourceId, '/')[2], split(functionAppResourceId, '/')[4])
}

resource keyVaultToRotator 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = {
  parent: systemTopic
  name: 'key-vault-to-rotator'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionApp.properties.defaultHostName}/runtime/webhooks/eventgrid?functionName=${functionName}&code=${listKeys('${functionAppResourceId}/host/default', '2024-11-01').systemKeys.eventgrid_extension}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.KeyNearExpiry'
        'Microsoft.KeyVault.KeyExpired'
        'Microsoft.KeyVault.KeyNewVersionCreated'
      ]
    }
    // A rotation must not be lost to a cold start or a transient failure: retry for a day, then dead-letter.
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityResourceId
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: deadLetterStorageAccountResourceId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output EVENT_SUBSCRIPTION_ID string = keyVaultToRotator.id
