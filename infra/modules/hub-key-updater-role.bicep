// The custom role that lets the rotator re-point a hub's CMK: read the hub, write it back, follow the async PUT.
// Its own file so the azd preprovision hook can create it (and wait until every hub subscription sees it) before
// main.bicep assigns it: role definitions are eventually consistent, and a fresh one may not be found at first.
targetScope = 'subscription'

import { hubSubscriptionList } from 'shared.bicep'

@description('azd environment name, as in main.bicep.')
param environmentName string

@description('Region of the deployment, as in main.bicep; with the subscription and the name it makes the role unique.')
param location string

@description('Comma-separated hub subscription ids, as in main.bicep. Empty: this subscription.')
param hubSubscriptionIds string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

// Seeded with everything its name carries (subscription, environment, region): the same environment name in
// another region or subscription is another role, never a rewrite of this one.
resource hubKeyUpdaterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, environmentName, location, 'cmk-rotator-iot-hub-key-updater')
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
          // ARM's linked access check: a PUT whose body names user-assigned identities (a CMK hub's does, even
          // unchanged) needs assign/action on each of them. Covers identities in the hub subscriptions; identities
          // elsewhere need Managed Identity Operator granted there (docs/deployment.md).
          'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action'
        ]
        notActions: []
      }
    ]
    assignableScopes: [for id in hubSubscriptionList(hubSubscriptionIds, subscription().subscriptionId): '/subscriptions/${id}']
  }
}

output roleDefinitionGuid string = hubKeyUpdaterRole.name
output roleDefinitionId string = hubKeyUpdaterRole.id
