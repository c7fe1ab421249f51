// Every role assignment of the deployment, and the custom Azure ML role. Each grant is as narrow as works and
// says why in its description (README "Deploy to Azure" has the same table; tests/infra checks they agree).
// A module can only grant inside its own resource group, so main.bicep deploys this file twice:
// grantsIn = 'appResourceGroup' (storage, Event Grid, Application Insights) and 'amlWorkspaceResourceGroup'.

@allowed([
  'appResourceGroup'
  'amlWorkspaceResourceGroup'
])
param grantsIn string

@description('Object id of the Function App user-assigned identity.')
param appPrincipalId string

@description('Object id of the batch compute cluster identity; empty = no grants for it.')
param amlComputePrincipalId string

@description('Object id of the Event Grid system topic identity (dead-lettering).')
param systemTopicPrincipalId string

@description('The Event Grid system topic on the Azure ML workspace (in the workspace resource group); empty = amlRunEvents is off, no grant.')
param amlSystemTopicName string = ''

@description('Object id of that system topic identity (dead-lettering run events); empty = no grant.')
param amlSystemTopicPrincipalId string = ''

param storageAccountName string
param storageNames object
param applicationInsightsName string
param eventGridTopicName string
param systemTopicName string
param amlWorkspaceName string

@description('Resource id of the storage account behind the deployed model datastore (REQUIRED_COLUMNS=auto reads its MLmodel file there); empty = no grant. Granted only when the account is in this resource group, as a workspace default storage account is.')
param modelStorageAccountId string = ''

var inAppGroup = grantsIn == 'appResourceGroup'
var inAmlGroup = grantsIn == 'amlWorkspaceResourceGroup'
var grantCompute = inAppGroup && !empty(amlComputePrincipalId)
var grantAmlSubscriptionRead = inAmlGroup && !empty(amlSystemTopicName)
var grantAmlDeadLetter = inAppGroup && !empty(amlSystemTopicPrincipalId)
var grantModelRead = inAmlGroup && !empty(modelStorageAccountId) && toLower(split(modelStorageAccountId, '/')[4]) == toLower(resourceGroup().name)

// Built-in role ids, from Microsoft's "Azure built-in roles" reference.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'
var eventGridEventSubscriptionReader = '2414bbcf-6497-4faf-8c65-045460748405'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

// ---- Scopes in the app resource group -------------------------------------------------------------------

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource hostsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.hostsContainer
}

resource secretsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.secretsContainer
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.deploymentContainer
}

resource inputContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.inputContainer
}

resource amlOutputsContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.amlOutputsContainer
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.deadLetterContainer
}

var appDataContainerNames = [
  storageNames.inputContainer
  storageNames.outputContainer
  storageNames.archiveContainer
  storageNames.failedContainer
  storageNames.rejectedContainer
  storageNames.amlOutputsContainer
]

resource appDataContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for containerName in appDataContainerNames: {
    parent: blobService
    name: containerName
  }
]

resource referencesContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: storageNames.referencesContainer
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource eventGridTopic 'Microsoft.EventGrid/topics@2022-06-15' existing = {
  name: eventGridTopicName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

// ---- The app identity ---------------------------------------------------------------------------------

// Host storage: Microsoft documents Storage Blob Data Owner for an identity-based AzureWebJobsStorage.
resource appHostsContainerOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(hostsContainer.id, appPrincipalId, storageBlobDataOwner)
  scope: hostsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (identity-based AzureWebJobsStorage, documented role): blob receipts, timer schedule status, singleton and listener leases.'
  }
}

// Function keys: the host keeps its keys, including the blobs_extension key of the webhook, in this container.
resource appSecretsContainerOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(secretsContainer.id, appPrincipalId, storageBlobDataOwner)
  scope: secretsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (identity-based AzureWebJobsStorage, documented role): the host keeps its function and system keys here.'
  }
}

// Flex Consumption fetches (and, on deploy, stores) the package with the identity named in functionAppConfig.
resource appDeploymentContainerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(deploymentContainer.id, appPrincipalId, storageBlobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Flex Consumption deployment storage (functionAppConfig authenticates with this identity): the app package is written and read here.'
  }
}

// The app's own containers: the blob trigger and intake read inputs, complete_job reads Azure ML outputs,
// writes predictions and moves inputs (copy + conditional delete). Batch jobs also read inputs and write
// outputs under the invoker's identity, which is this one.
resource appDataContainerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (containerName, i) in (inAppGroup ? appDataContainerNames : []): {
    name: guid(appDataContainers[i].id, appPrincipalId, storageBlobDataContributor)
    scope: appDataContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      description: 'App data: the blob trigger reads inputs, the app moves them (copy + delete), writes predictions and reads Azure ML outputs; batch jobs run under this identity.'
    }
  }
]

// Drift reference profiles: the completion only reads them (operators upload them with their own rights).
resource appReferencesReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(referencesContainer.id, appPrincipalId, storageBlobDataReader)
  scope: referencesContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Drift reference profiles (DRIFT_REFERENCE, a route driftReference): the completion reads the job reference profile; it never writes here.'
  }
}

// Queues: the host creates and uses queues named at run time (the blob trigger's internal dispatch queue is
// named after the host id; poison queues appear on first failure), so no per-queue scope holds them all.
// The account is dropscore's alone: this covers only its queues.
resource appQueueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(storageAccount.id, appPrincipalId, storageQueueDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Queues (documented for blob triggers): job-completions (poller sends, complete_job receives), its poison queue, the blob trigger dispatch and poison queues the host names at run time.'
  }
}

// Tables: the ledger adapter creates its tables on first use, and Create Table is a service-level request
// (POST /Tables), so a per-table scope would not cover it. The account is dropscore's alone.
resource appTableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(storageAccount.id, appPrincipalId, storageTableDataContributor)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Job ledger: the jobs, activejobs and joblist tables (conditional writes, queries); the adapter creates them on first use, a service-level request.'
  }
}

// Publishing DropScore.* events to the custom topic with an Entra token (local auth is disabled).
resource appTopicSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(eventGridTopic.id, appPrincipalId, eventGridDataSender)
  scope: eventGridTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Publish DropScore.* events to the custom topic (local auth disabled: Entra token only).'
  }
}

// Telemetry with Entra auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING; local auth is disabled).
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(applicationInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Send telemetry to Application Insights with Entra auth (local auth disabled).'
  }
}

// The health check reads the BlobCreated subscription (BLOB_EVENT_SUBSCRIPTION_ID) to report a missing one.
resource appSubscriptionReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(systemTopic.id, appPrincipalId, eventGridEventSubscriptionReader)
  scope: systemTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridEventSubscriptionReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Health check: read the BlobCreated event subscription (BLOB_EVENT_SUBSCRIPTION_ID) and report it missing or failing.'
  }
}

// The workspace's system topic, in the workspace resource group (read only when grantAmlSubscriptionRead;
// 'unused' keeps the name valid when it is not).
resource amlSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: empty(amlSystemTopicName) ? 'unused' : amlSystemTopicName
}

// The health check reads the run events subscription (AML_EVENT_SUBSCRIPTION_ID) on the workspace's system topic.
resource appAmlSubscriptionReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantAmlSubscriptionRead) {
  name: guid(amlSystemTopic.id, appPrincipalId, eventGridEventSubscriptionReader)
  scope: amlSystemTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridEventSubscriptionReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Health check: read the Azure ML run events subscription (AML_EVENT_SUBSCRIPTION_ID) and report it missing or failing.'
  }
}

// ---- The batch compute identity (when amlComputePrincipalId is set) -----------------------------------

// Identity-based datastores: the cluster identity mounts the input (Microsoft documents Storage Blob Data Reader).
resource computeInputReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantCompute) {
  name: guid(inputContainer.id, amlComputePrincipalId, storageBlobDataReader)
  scope: inputContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: amlComputePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch compute identity mounts the dropscore_inputs datastore (documented: at least Storage Blob Data Reader).'
  }
}

// ...and writes predictions.csv through the output datastore.
resource computeOutputContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantCompute) {
  name: guid(amlOutputsContainer.id, amlComputePrincipalId, storageBlobDataContributor)
  scope: amlOutputsContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: amlComputePrincipalId
    principalType: 'ServicePrincipal'
    description: 'Batch compute identity writes predictions.csv through the dropscore_outputs datastore.'
  }
}

// ---- The Event Grid system topic identity -------------------------------------------------------------

// Undeliverable BlobCreated events are dead-lettered with the topic's own identity (deadLetterWithResourceIdentity).
resource systemTopicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAppGroup) {
  name: guid(deadLetterContainer.id, systemTopicPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: systemTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Dead-letter undeliverable BlobCreated events (deadLetterWithResourceIdentity, system topic identity).'
  }
}

// ---- The Azure ML workspace's system topic identity (when amlRunEvents is on) -------------------------

// Undeliverable run events are dead-lettered with that topic's own identity (deadLetterWithResourceIdentity).
resource amlSystemTopicDeadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantAmlDeadLetter) {
  name: guid(deadLetterContainer.id, amlSystemTopicPrincipalId, storageBlobDataContributor)
  scope: deadLetterContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    principalId: amlSystemTopicPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Dead-letter undeliverable Azure ML run events (deadLetterWithResourceIdentity, workspace system topic identity).'
  }
}

// ---- Azure ML (in the workspace's resource group) -----------------------------------------------------

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: amlWorkspaceName
}

// Microsoft's list for invoking batch endpoints ("Configure RBAC for batch endpoint invoke"), verbatim.
var batchInvokeActions = [
  'Microsoft.MachineLearningServices/workspaces/read'
  'Microsoft.MachineLearningServices/workspaces/data/versions/write'
  'Microsoft.MachineLearningServices/workspaces/datasets/registered/read'
  'Microsoft.MachineLearningServices/workspaces/datasets/registered/write'
  'Microsoft.MachineLearningServices/workspaces/datasets/unregistered/read'
  'Microsoft.MachineLearningServices/workspaces/datasets/unregistered/write'
  'Microsoft.MachineLearningServices/workspaces/datastores/read'
  'Microsoft.MachineLearningServices/workspaces/datastores/write'
  'Microsoft.MachineLearningServices/workspaces/datastores/listsecrets/action'
  'Microsoft.MachineLearningServices/workspaces/listStorageAccountKeys/action'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/read'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/write'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments/read'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments/write'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments/jobs/write'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs/write'
  'Microsoft.MachineLearningServices/workspaces/computes/read'
  'Microsoft.MachineLearningServices/workspaces/computes/listKeys/action'
  'Microsoft.MachineLearningServices/workspaces/metadata/secrets/read'
  'Microsoft.MachineLearningServices/workspaces/metadata/snapshots/read'
  'Microsoft.MachineLearningServices/workspaces/metadata/artifacts/read'
  'Microsoft.MachineLearningServices/workspaces/metadata/artifacts/write'
  'Microsoft.MachineLearningServices/workspaces/experiments/read'
  'Microsoft.MachineLearningServices/workspaces/experiments/runs/submit/action'
  'Microsoft.MachineLearningServices/workspaces/experiments/runs/read'
  'Microsoft.MachineLearningServices/workspaces/experiments/runs/write'
  'Microsoft.MachineLearningServices/workspaces/metrics/resource/write'
  'Microsoft.MachineLearningServices/workspaces/modules/read'
  'Microsoft.MachineLearningServices/workspaces/models/read'
  'Microsoft.MachineLearningServices/workspaces/endpoints/pipelines/read'
  'Microsoft.MachineLearningServices/workspaces/endpoints/pipelines/write'
  'Microsoft.MachineLearningServices/workspaces/environments/read'
  'Microsoft.MachineLearningServices/workspaces/environments/write'
  'Microsoft.MachineLearningServices/workspaces/environments/build/action'
  'Microsoft.MachineLearningServices/workspaces/environments/readSecrets/action'
]

// What dropscore does beyond invoking: poll its jobs (GET {scoring uri}/{job}; which read action that data-plane
// call checks is not documented, so both batch job reads), read and cancel stuck jobs through ARM
// (AML_WORKSPACE_ID). The health check's reads (batchEndpoints, deployments, datastores) are in the list above.
var dropscoreJobActions = [
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/jobs/read'
  'Microsoft.MachineLearningServices/workspaces/batchEndpoints/deployments/jobs/read'
  'Microsoft.MachineLearningServices/workspaces/jobs/read'
  'Microsoft.MachineLearningServices/workspaces/jobs/cancel/action'
]

// Narrower than AzureML Data Scientist (workspaces/*/read|action|write|delete on everything in the workspace).
// Custom roles are assignable at resource group (not resource) scope; the assignment below is on the workspace.
resource batchInvokerRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = if (inAmlGroup) {
  name: guid(workspace.id, 'dropscore-batch-invoker')
  properties: {
    roleName: 'dropscore batch invoker (${resourceGroup().name}/${amlWorkspaceName})'
    description: 'Invoke Azure ML batch endpoints (Microsoft documented action list), read and cancel the resulting jobs.'
    type: 'CustomRole'
    permissions: [
      {
        actions: concat(batchInvokeActions, dropscoreJobActions)
        notActions: []
      }
    ]
    assignableScopes: [
      resourceGroup().id
    ]
  }
}

// The app invokes the batch endpoint and follows its jobs with this role, on the workspace only.
resource appBatchInvoker 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (inAmlGroup) {
  name: guid(workspace.id, appPrincipalId, 'dropscore-batch-invoker')
  scope: workspace
  properties: {
    roleDefinitionId: batchInvokerRole.id
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Invoke the batch endpoint, poll, read and cancel its jobs, health-check the endpoint, deployment and datastores.'
  }
}

// The workspace's storage account, behind the workspaceblobstore / workspaceartifactstore datastores.
resource modelStorageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: empty(modelStorageAccountId) ? 'unused' : last(split(modelStorageAccountId, '/'))
}

// REQUIRED_COLUMNS=auto: the app reads the deployed model's MLmodel (its input signature) there.
resource appModelReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (grantModelRead) {
  name: guid(modelStorageAccount.id, appPrincipalId, storageBlobDataReader)
  scope: modelStorageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'REQUIRED_COLUMNS=auto: read the deployed model MLmodel file (its input signature) from the workspace storage account.'
  }
}
