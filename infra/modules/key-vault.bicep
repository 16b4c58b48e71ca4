// The Key Vault the rotator manages (new, or an existing one in any resource group or subscription) and the function
// identity's access to it. Deployed into the vault's resource group; the vault's system topic is main.bicep's.
param createVault bool
param vaultName string
param location string
param tags object
param functionPrincipalId string
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
// ARM's PUT of a key only creates it: once the key exists, a redeployment changes neither its expiry nor its rotation
// policy, whatever keyValidityDays/notifyDaysBeforeExpiry say then. Change the policy with
// `az keyvault key rotation-policy update` (docs/deployment.md).
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

output vaultUrl string = 'https://${vaultName}${environment().suffixes.keyvaultDns}'
output exampleKeyName string = createVault ? exampleKeyName : ''
output vaultId string = vault.id
output location string = vault.location
