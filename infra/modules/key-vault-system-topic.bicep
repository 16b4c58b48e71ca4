// A Key Vault's Event Grid system topic (one per vault), carrying Event Grid's identity, which the event subscription
// uses to write dead letters. Writes the whole topic: callers pass what an existing topic already has.
param name string
param location string
param tags object
param vaultId string

@allowed([
  'UserAssigned'
  'SystemAssigned, UserAssigned'
])
param identityType string

@description('Every user-assigned identity the topic is to carry (resource ids).')
param userAssignedIdentityIds string[]

resource systemTopic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: name
  location: location
  tags: tags
  identity: {
    type: identityType
    userAssignedIdentities: toObject(userAssignedIdentityIds, id => id, id => {})
  }
  properties: {
    source: vaultId
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

output name string = systemTopic.name
