// Where the rotator publishes its outcomes (CloudEvents, Entra ID only), and the alert on failures.
//
// The alert is a metric alert on the topic: Event Grid's metrics carry no event-type dimension, so a subscription
// filtered to the failure types routes them into the failed-outcomes queue, and the alert fires when that
// subscription's MatchedEventCount is above zero. It depends only on the event types the app publishes (not on log
// text), and the queue keeps every failure for 7 days for whoever answers the alert.
param location string
param tags object
param resourceToken string
param functionPrincipalId string
param eventGridIdentityId string
param storageAccountId string
param failedOutcomesQueueName string
param alertEmailAddress string

var failureSubscriptionName = 'failed-outcomes'
var emailReceivers = empty(alertEmailAddress) ? [] : [
  {
    name: 'rotation-operators'
    emailAddress: alertEmailAddress
    useCommonAlertSchema: true
  }
]

resource topic 'Microsoft.EventGrid/topics@2025-02-15' = {
  name: 'evgt-outcomes-${resourceToken}'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${eventGridIdentityId}': {}
    }
  }
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    minimumTlsVersionAllowed: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

// The rotator publishes outcome events with its identity; it cannot read or manage the topic.
resource functionDataSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, functionPrincipalId, 'd5a91429-5739-47e2-a06b-3470a27159e7')
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', 'd5a91429-5739-47e2-a06b-3470a27159e7') // EventGrid Data Sender
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource failureSubscription 'Microsoft.EventGrid/topics/eventSubscriptions@2025-02-15' = {
  parent: topic
  name: failureSubscriptionName
  properties: {
    eventDeliverySchema: 'CloudEventSchemaV1_0'
    filter: {
      includedEventTypes: [
        'CmkRotator.HubKeyUpdateFailed'
        'CmkRotator.RotationFailed'
        // A new version hubs cannot use: they stay on the old one, which will expire in turn.
        'CmkRotator.VersionUnusable'
        // The owner's emergency brake was pulled: the listed hubs cannot read their data until a restore.
        'CmkRotator.KeyRevoked'
      ]
    }
    deliveryWithResourceIdentity: {
      identity: {
        type: 'UserAssigned'
        userAssignedIdentity: eventGridIdentityId
      }
      destination: {
        endpointType: 'StorageQueue'
        properties: {
          resourceId: storageAccountId
          queueName: failedOutcomesQueueName
          queueMessageTimeToLiveInSeconds: 604800
        }
      }
    }
    retryPolicy: {
      maxDeliveryAttempts: 30
      eventTimeToLiveInMinutes: 1440
    }
  }
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = {
  name: 'ag-cmk-rotator-${resourceToken}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'cmkrotator'
    enabled: true
    emailReceivers: emailReceivers
  }
}

resource failureAlert 'Microsoft.Insights/metricAlerts@2018-03-01' = {
  name: 'alert-cmk-rotation-failed-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    description: 'The CMK rotator reported a failed rotation, a hub it could not re-point or a revoked key (CmkRotator.RotationFailed, CmkRotator.HubKeyUpdateFailed, CmkRotator.VersionUnusable, CmkRotator.KeyRevoked). The events are in the failed-outcomes queue.'
    severity: 1
    enabled: true
    scopes: [
      topic.id
    ]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    autoMitigate: true
    criteria: {
      'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
      allOf: [
        {
          name: 'FailureOutcomesPublished'
          criterionType: 'StaticThresholdCriterion'
          metricNamespace: 'Microsoft.EventGrid/topics'
          metricName: 'MatchedEventCount'
          // Event Grid may report subscription names upper-cased in this dimension; both spellings match.
          dimensions: [
            {
              name: 'EventSubscriptionName'
              operator: 'Include'
              values: [
                failureSubscription.name
                toUpper(failureSubscription.name)
              ]
            }
          ]
          operator: 'GreaterThan'
          threshold: 0
          timeAggregation: 'Total'
        }
      ]
    }
    actions: [
      {
        actionGroupId: actionGroup.id
      }
    ]
  }
}

output topicEndpoint string = topic.properties.endpoint
