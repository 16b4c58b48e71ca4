// The vault's existing system topic, in whatever resource group holds it: adds Event Grid's identity (for dead
// letters) and keeps the topic's own identities, tags and region. A PUT replaces the identity block, so the
// current one is read here and written back, with ours added, by the module below.
param name string
param eventGridIdentityId string

@description('The vault whose events this topic must carry.')
param expectedSourceId string

resource current 'Microsoft.EventGrid/systemTopics@2025-02-15' existing = {
  name: name
}

var currentIdentityType = current.?identity.?type ?? 'None'
// Ids come back in ARM's casing, which may differ from ours: compare case-insensitively so ours is not added twice.
var otherIdentityIds = filter(
  objectKeys(current.?identity.?userAssignedIdentities ?? {}),
  id => toLower(id) != toLower(eventGridIdentityId)
)

module write 'key-vault-system-topic.bicep' = {
  name: 'system-topic-identity-${uniqueString(current.id)}'
  params: {
    name: name
    location: current.location
    tags: current.?tags ?? {}
    // Writing another vault's topic would move the rotator's events elsewhere: stop instead.
    vaultId: toLower(current.properties.source) == toLower(expectedSourceId)
      ? current.properties.source
      : any({})['${current.id} is the system topic of ${current.properties.source}, not of ${expectedSourceId}']
    identityType: contains(currentIdentityType, 'SystemAssigned') ? 'SystemAssigned, UserAssigned' : 'UserAssigned'
    userAssignedIdentityIds: concat(otherIdentityIds, [eventGridIdentityId])
  }
}

output name string = write.outputs.name
