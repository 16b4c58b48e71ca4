// The Key Vault the rotator manages (new, or an existing one in its own resource group), the function identity's
// access to it, and the vault's Event Grid system topic. Deployed into the vault's resource group.
param createVault bool
param vaultName string
param location string
param tags object
param systemTopicName string
param functionPrincipalId string
param eventGridIdentityId string
param keyValidityDays int
param notifyDaysBeforeExpiry int
param exampleKeyCreatedAt string

var exampleKeyName = 'iot-hub-cmk'

resource newVault 'Microsoft.KeyVault/vaults@2024-11-01' = if (createVault) {
  name: vaultName
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // IoT Hub (like every CMK consumer) requires purge protection on the key's vault.
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// The same vault whether created above or brought in; property reads wait for the creation through dependsOn.
resource vault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: vaultName
}

// An example CMK for a new vault: Key Vault publishes KeyNearExpiry `notifyDaysBeforeExpiry` days before `exp`.
// (An ARM PUT of an existing key changes nothing, so redeployments keep its first expiry.)
resource exampleKey 'Microsoft.KeyVault/vaults/keys@2024-11-01' = if (createVault) {
  parent: newVault
  name: exampleKeyName
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
      exp: dateTimeToEpoch(dateTimeAdd(exampleKeyCreatedAt, 'P${keyValidityDays}D'))
    }
    rotationPolicy: {
      attributes: {
        expiryTime: 'P${keyValidityDays}D'
      }
      lifetimeActions: [
        {
          trigger: {
            timeBeforeExpiry: 'P${notifyDaysBeforeExpiry}D'
          }
          action: {
            type: 'notify'
          }
        }
      ]
    }
  }
}

// The rotator creates key versions, reads them and updates rotation policies on this vault only.
resource functionCryptoOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionPrincipalId, '14b46e9e-c2b7-41b4-b07b-48a6ebf60603')
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '14b46e9e-c2b7-41b4-b07b-48a6ebf60603') // Key Vault Crypto Officer
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    newVault
  ]
}

// Key Vault's events come from this system topic. A module, so its location can be the vault's, read at run time.
module systemTopic 'key-vault-system-topic.bicep' = {
  name: 'key-vault-system-topic-${uniqueString(vault.id, systemTopicName)}'
  params: {
    name: systemTopicName
    location: vault.location
    tags: tags
    vaultId: vault.id
    eventGridIdentityId: eventGridIdentityId
  }
  dependsOn: [
    newVault
  ]
}

output vaultUrl string = 'https://${vaultName}${environment().suffixes.keyvaultDns}'
output exampleKeyName string = createVault ? exampleKeyName : ''
output systemTopicName string = systemTopic.outputs.name
