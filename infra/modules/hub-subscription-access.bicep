// The function identity's access in one subscription that holds IoT hubs: Reader to find the hubs (the app lists
// them per subscription), and the hub key updater role here unless it is granted per resource group instead.
targetScope = 'subscription'

param principalId string
param hubKeyUpdaterRoleGuid string
param grantHubKeyUpdater bool

resource hubReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, 'acdd72a7-3385-48ef-bd42-f606fba81ae7')
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'acdd72a7-3385-48ef-bd42-f606fba81ae7') // Reader
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}

resource hubKeyUpdater 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantHubKeyUpdater) {
  name: guid(subscription().id, principalId, hubKeyUpdaterRoleGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', hubKeyUpdaterRoleGuid) // custom role: CMK Rotator IoT Hub Key Updater
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
