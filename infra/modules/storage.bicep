// The app's StorageV2 account: host storage (AzureWebJobsStorage), the deployment package, the app's
// containers, the ledger tables and the completions queue. Keys are disabled: every client uses Entra ID.
param name string
param location string
param tags object

@description('Blob containers to create (the app settings, the role assignments and the datastores refer to them).')
param containerNames array

@description('Tables to create (the job ledger and its active index).')
param tableNames array

@description('Queues to create (completions, and the poison queues the host would otherwise create on first failure).')
param queueNames array

@description('Days a deleted blob or container can be restored.')
param softDeleteRetentionDays int = 7

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; a default-deny network rule would lock the app out. Access is Entra-only (shared keys disabled).
  // checkov:skip=CKV_AZURE_59:Same reason: the app, Event Grid and Azure ML compute reach the account over the public endpoint; shared keys are disabled and every grant is RBAC.
  // checkov:skip=CKV_AZURE_206:Locally redundant storage is enough for transient job files (inputs are archived, predictions can be recomputed); GRS doubles the cost.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource tables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for tableName in tableNames: {
    parent: tableService
    name: tableName
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

output name string = account.name
output id string = account.id
output blobEndpoint string = account.properties.primaryEndpoints.blob
