// The one user-assigned managed identity the Function App uses: for the host (AzureWebJobsStorage), the
// deployment package, Application Insights, and the app's own SDK clients (AZURE_CLIENT_ID).
param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
