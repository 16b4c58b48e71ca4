// The rotator: a Node.js 20 function app on the Flex Consumption plan, running as its user-assigned identity.
// Flex Consumption takes no FUNCTIONS_WORKER_RUNTIME / WEBSITE_RUN_FROM_PACKAGE settings: runtime and package
// location live in functionAppConfig.
param location string
param tags object
param resourceToken string
param identityId string
param identityClientId string
param storageAccountName string
@description('The storage account\'s primaryEndpoints: blob, queue and table.')
param storageEndpoints object
param deploymentContainerUrl string
param applicationInsightsConnectionString string
param allowedVaultUrls string
param hubSubscriptionIds string
param outcomeTopicEndpoint string
param keyValidityDays int
param nearExpiryDays int
param reconcileSchedule string
@description('Client id of the Entra ID app registration operators sign in with (App Service Authentication). Empty: operators use a function key.')
param operatorSignInClientId string
param operatorSignInTenantId string

var operatorSignIn = !empty(operatorSignInClientId)

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: 'func-${resourceToken}'
  location: location
  // azd finds the service's target by this tag.
  tags: union(tags, { 'azd-service-name': 'rotator' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: 40
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'node'
        version: '20'
      }
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: {
      // Host storage and the app's tables, blobs and queues, by identity (no connection string exists: shared keys
      // are off). The service URIs come from the account, so they are right in every cloud; the account name stays for
      // code that builds clients from it.
      AzureWebJobsStorage__accountName: storageAccountName
      AzureWebJobsStorage__blobServiceUri: storageEndpoints.blob
      AzureWebJobsStorage__queueServiceUri: storageEndpoints.queue
      AzureWebJobsStorage__tableServiceUri: storageEndpoints.table
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      // Telemetry, ingested with the identity (the component's local auth is off).
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // DefaultAzureCredential picks the user-assigned identity by this.
      AZURE_CLIENT_ID: identityClientId
      ROTATOR_ALLOWED_VAULTS: allowedVaultUrls
      ROTATOR_SUBSCRIPTION_IDS: hubSubscriptionIds
      // Published with the identity (EventGrid Data Sender); ROTATOR_OUTCOME_TOPIC_KEY stays unset on purpose.
      ROTATOR_OUTCOME_TOPIC_ENDPOINT: outcomeTopicEndpoint
      ROTATOR_DEFAULT_KEY_VALIDITY_DAYS: string(keyValidityDays)
      ROTATOR_NEAR_EXPIRY_DAYS: string(nearExpiryDays)
      // This cloud's ARM endpoint (the app drops the trailing slash).
      ROTATOR_ARM_ENDPOINT: environment().resourceManager
      ROTATOR_RECONCILE_SCHEDULE: reconcileSchedule
      // With sign-in, the operator routes take no function key: App Service Authentication lets only signed-in
      // callers through, and the app checks the principal it passes on.
      ROTATOR_OPERATOR_AUTH: operatorSignIn ? 'entra-id' : 'function-key'
    }
  }

  // App Service Authentication in front of the app: browsers are sent to Entra ID to sign in, API clients bring an
  // Entra ID token for the registration. Health and Event Grid's webhook (the extension's system key guards it) stay
  // reachable without one. No client secret is configured: sign-in uses ID tokens, which the registration must issue.
  resource signIn 'config' = if (operatorSignIn) {
    name: 'authsettingsV2'
    properties: {
      platform: {
        enabled: true
      }
      globalValidation: {
        requireAuthentication: true
        unauthenticatedClientAction: 'RedirectToLoginPage'
        redirectToProvider: 'azureactivedirectory'
        excludedPaths: [
          '/api/health'
          '/runtime/webhooks/eventgrid'
        ]
      }
      identityProviders: {
        azureActiveDirectory: {
          enabled: true
          registration: {
            clientId: operatorSignInClientId
            openIdIssuer: '${environment().authentication.loginEndpoint}${operatorSignInTenantId}/v2.0'
          }
          validation: {
            allowedAudiences: [
              operatorSignInClientId
              'api://${operatorSignInClientId}'
            ]
          }
        }
      }
      login: {
        tokenStore: {
          enabled: true
        }
      }
      httpSettings: {
        requireHttps: true
      }
    }
  }
}

// Deployments authenticate with Entra ID (azd and the CLI use OneDeploy with a token); no publishing passwords.
// `location` is demanded by the resource provider ("The parameter location has an invalid value" without it), though
// the published type lacks it (as Azure Verified Modules do, it is set anyway).
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  #disable-next-line BCP187 // the type definition omits location; the resource provider requires it (see above)
  location: location
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  #disable-next-line BCP187 // the type definition omits location; the resource provider requires it (see above)
  location: location
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'
