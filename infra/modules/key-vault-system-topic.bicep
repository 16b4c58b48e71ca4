// The vault's Event Grid system topic (one per vault). It carries Event Grid's identity, which the event
// subscription uses to write dead letters.
param name string
param location string
param tags object
param vaultId string
param eventGridIdentityId string

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    source: vaultId
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output name string = systemTopic.name
