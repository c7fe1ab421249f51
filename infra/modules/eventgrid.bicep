// Event Grid: the custom topic the app publishes DropScore.* events to (CloudEvents 1.0, Entra-only), and the
// system topic on the storage account whose BlobCreated events drive the blob trigger. The subscription on the
// system topic is created after code deploy by infra/hooks/postdeploy.py (it needs the blob extension key).
param topicName string
param systemTopicName string
param storageAccountName string
param location string
param tags object

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  // checkov:skip=CKV_AZURE_191:The topic delivers only to subscribers' endpoints, never to an Azure resource with its own identity, so a managed identity would have nothing to do.
  // checkov:skip=CKV_AZURE_193:Subscribers outside Azure must reach the topic; publishing needs an Entra token with EventGrid Data Sender (local auth is disabled).
  name: topicName
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: systemTopicName
  location: location
  tags: tags
  // Its own identity writes dead-lettered events to the dead-letter container (roles.bicep grants it there only).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output topicName string = topic.name
output topicEndpoint string = topic.properties.endpoint
output systemTopicName string = systemTopic.name
output systemTopicId string = systemTopic.id
output systemTopicPrincipalId string = systemTopic.identity.principalId
