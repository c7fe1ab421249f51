// Azure ML side, deployed into the existing workspace's resource group: identity-based datastores on the app's
// storage account (no stored credentials: jobs read and write with Entra identities), and the batch endpoint's
// scoring URI for the app settings. The role assignments are in roles.bicep.
param workspaceName string
param batchEndpointName string
param storageAccountName string
param storageAccountResourceGroup string
param inputDatastoreName string
param inputContainerName string
param outputDatastoreName string
param outputContainerName string

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

resource batchEndpoint 'Microsoft.MachineLearningServices/workspaces/batchEndpoints@2024-04-01' existing = {
  parent: workspace
  name: batchEndpointName
}

var datastores = [
  {
    name: inputDatastoreName
    container: inputContainerName
    description: 'dropscore: CSVs dropped for scoring (read by batch jobs as azureml://datastores/${inputDatastoreName}/paths/<name>).'
  }
  {
    name: outputDatastoreName
    container: outputContainerName
    description: 'dropscore: batch job outputs (predictions.csv per job), read back by the Function App.'
  }
]

resource blobDatastores 'Microsoft.MachineLearningServices/workspaces/datastores@2024-04-01' = [
  for datastore in datastores: {
    parent: workspace
    name: datastore.name
    properties: {
      datastoreType: 'AzureBlob'
      description: datastore.description
      accountName: storageAccountName
      containerName: datastore.container
      endpoint: environment().suffixes.storage
      protocol: 'https'
      resourceGroup: storageAccountResourceGroup
      subscriptionId: subscription().subscriptionId
      serviceDataAccessAuthIdentity: 'None'
      credentials: {
        credentialsType: 'None'
      }
    }
  }
]

output workspaceId string = workspace.id
// The workspace's default storage account: its workspaceblobstore and workspaceartifactstore datastores keep the
// registered models' files (REQUIRED_COLUMNS=auto reads the MLmodel there).
output workspaceStorageAccountId string = workspace.properties.storageAccount
output scoringUri string = batchEndpoint.properties.scoringUri
