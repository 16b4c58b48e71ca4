// The hub key updater role on one resource group that holds IoT hubs (when hubs are limited to resource groups).
targetScope = 'resourceGroup'

param principalId string
param hubKeyUpdaterRoleGuid string

resource hubKeyUpdater 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(resourceGroup().id, principalId, hubKeyUpdaterRoleGuid)
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', hubKeyUpdaterRoleGuid) // custom role: CMK Rotator IoT Hub Key Updater
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
