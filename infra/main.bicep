// dropscore: everything the Function App needs, keyless (one user-assigned identity, RBAC only).
// Deploy with `azd up` (azure.yaml) or `az deployment sub create -f infra/main.bicep -l <location> -p ...`,
// then run infra/hooks/postdeploy.py (azd runs it for you) to subscribe the blob trigger to BlobCreated events and,
// with amlRunEvents, aml_run_events to the workspace's run events.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the environment (azd environment name); used for the resource group and the unique suffix of resource names.')
param environmentName string

@minLength(1)
@description('Region of every resource this template creates.')
@metadata({ azd: { type: 'location' } })
param location string

@description('Resource group of the existing Azure ML workspace that hosts the batch endpoint.')
param amlWorkspaceResourceGroup string

@description('Name of the existing Azure ML workspace.')
param amlWorkspaceName string

@description('Name of the existing batch endpoint in that workspace.')
param batchEndpointName string

@description('Batch deployment to route jobs to (azureml-model-deployment header); empty = the endpoint default deployment.')
param batchDeploymentName string = ''

@description('REQUIRED_COLUMNS: columns every input must have (comma-separated), "auto" to read them from the deployed MLflow model signature (grants the app Storage Blob Data Reader on the workspace storage account), or empty for no check.')
param requiredColumns string = 'auto'

@description('Python version of the Flex Consumption runtime.')
param pythonVersion string = '3.11'

@description('Object (principal) id of the batch compute cluster managed identity. Empty: its data-access role assignments are skipped (see README, Deploy to Azure).')
param amlComputePrincipalId string = ''

@description('Name of the Event Grid subscription that feeds BlobCreated events to the blob trigger (created by infra/hooks/postdeploy.py).')
param blobEventSubscriptionName string = 'dropscore-incoming-csv'

@description('The fast completion path: an Event Grid system topic on the Azure ML workspace (or workspaceSystemTopicName) whose RunStatusChanged events reach aml_run_events (subscribed by infra/hooks/postdeploy.py); app setting AML_RUN_EVENTS on/off. Off: the poller alone finishes jobs.')
param amlRunEvents bool = true

@description('An existing Event Grid system topic on the workspace, in the workspace resource group, with a system-assigned identity (a workspace can have only one); empty = create one.')
param workspaceSystemTopicName string = ''

@description('Name of the Event Grid subscription that feeds the workspace run events to aml_run_events (created by infra/hooks/postdeploy.py).')
param amlEventSubscriptionName string = 'dropscore-aml-run-events'

@description('MAX_JOBS_IN_FLIGHT: Azure ML jobs submitted and not yet finished, at most.')
@minValue(1)
@maxValue(10000)
param maxJobsInFlight int = 100

@description('SHARD_THRESHOLD_MB: inputs larger than this are split into parts, scored as one job over every worker; 0 = never split.')
@minValue(0)
@maxValue(5242880)
param shardThresholdMb int = 256

@description('SHARD_PART_MB: size of each part of a split input.')
@minValue(1)
@maxValue(4096)
param shardPartMb int = 32

@description('ROUTES: JSON mapping input folders to other batch endpoints (README, Routes); empty = one route. Grant the app identity the batch invoker role on each endpoint it names.')
param routes string = ''

@description('Drift reference profile of the default route, as container/path in the app storage account (python -m shared.profile build, uploaded to the references container); empty = no drift reports.')
param driftReference string = ''

@description('Most instances Flex Consumption may scale the app out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance, in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

// Optional names; empty = derived from the environment name.
param resourceGroupName string = ''
param functionAppName string = ''
param appServicePlanName string = ''
param identityName string = ''
param storageAccountName string = ''
param logAnalyticsName string = ''
param applicationInsightsName string = ''
param eventGridTopicName string = ''
param systemTopicName string = ''

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var appName = !empty(functionAppName) ? functionAppName : 'func-dropscore-${resourceToken}'

// Every storage name the app reads from its settings, in one place: the storage module creates exactly these,
// the function app module puts them in the app settings, the role module scopes grants to them.
var storageNames = {
  inputContainer: 'incoming'
  outputContainer: 'predictions'
  archiveContainer: 'processed'
  failedContainer: 'failed'
  rejectedContainer: 'rejected'
  amlOutputsContainer: 'aml-outputs'
  referencesContainer: 'references'
  deploymentContainer: 'app-package-${take(toLower(appName), 32)}-${take(resourceToken, 7)}'
  deadLetterContainer: 'eventgrid-deadletter'
  hostsContainer: 'azure-webjobs-hosts'
  secretsContainer: 'azure-webjobs-secrets'
  jobsTable: 'jobs'
  activeJobsTable: 'activejobs'
  jobListTable: 'joblist'
  completionsQueue: 'job-completions'
  completionsPoisonQueue: 'job-completions-poison'
  blobTriggerPoisonQueue: 'webjobs-blobtrigger-poison'
}

// Identity-based (credential-less) Azure ML datastores on the app's storage account.
var amlNames = {
  inputDatastore: 'dropscore_inputs'
  outputDatastore: 'dropscore_outputs'
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : 'rg-dropscore-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: !empty(identityName) ? identityName : 'id-dropscore-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: !empty(storageAccountName) ? storageAccountName : 'stdropscore${take(resourceToken, 11)}'
    location: location
    tags: tags
    containerNames: [
      storageNames.inputContainer
      storageNames.outputContainer
      storageNames.archiveContainer
      storageNames.failedContainer
      storageNames.rejectedContainer
      storageNames.amlOutputsContainer
      storageNames.referencesContainer
      storageNames.deploymentContainer
      storageNames.deadLetterContainer
      storageNames.hostsContainer
      storageNames.secretsContainer
    ]
    tableNames: [
      storageNames.jobsTable
      storageNames.activeJobsTable
      storageNames.jobListTable
    ]
    queueNames: [
      storageNames.completionsQueue
      storageNames.completionsPoisonQueue
      storageNames.blobTriggerPoisonQueue
    ]
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: !empty(logAnalyticsName) ? logAnalyticsName : 'log-dropscore-${resourceToken}'
    applicationInsightsName: !empty(applicationInsightsName) ? applicationInsightsName : 'appi-dropscore-${resourceToken}'
    location: location
    tags: tags
  }
}

module eventGrid 'modules/eventgrid.bicep' = {
  name: 'eventgrid'
  scope: rg
  params: {
    topicName: !empty(eventGridTopicName) ? eventGridTopicName : 'evgt-dropscore-${resourceToken}'
    systemTopicName: !empty(systemTopicName) ? systemTopicName : 'evgst-dropscore-${resourceToken}'
    storageAccountName: storage.outputs.name
    location: location
    tags: tags
  }
}

module azureMl 'modules/azureml.bicep' = {
  name: 'azureml-${resourceToken}'
  scope: resourceGroup(amlWorkspaceResourceGroup)
  params: {
    workspaceName: amlWorkspaceName
    batchEndpointName: batchEndpointName
    storageAccountName: storage.outputs.name
    storageAccountResourceGroup: rg.name
    inputDatastoreName: amlNames.inputDatastore
    inputContainerName: storageNames.inputContainer
    outputDatastoreName: amlNames.outputDatastore
    outputContainerName: storageNames.amlOutputsContainer
  }
}

// The workspace's system topic for its run events (module in the workspace resource group, a topic's region is
// its source's). Deployed in any case so the outputs exist; with amlRunEvents false it deploys nothing.
module amlEvents 'modules/amlevents.bicep' = {
  name: 'amlevents-${resourceToken}'
  scope: resourceGroup(amlWorkspaceResourceGroup)
  params: {
    enabled: amlRunEvents
    workspaceName: amlWorkspaceName
    existingSystemTopicName: workspaceSystemTopicName
    systemTopicName: 'evgst-dropscore-aml-${resourceToken}'
    tags: tags
  }
}

// Empty when amlRunEvents is false (the module's outputs are too; said here so the wiring reads in one place).
var amlSystemTopicName = amlRunEvents ? amlEvents.outputs.systemTopicName : ''
var amlSystemTopicId = amlRunEvents ? amlEvents.outputs.systemTopicId : ''
var amlSystemTopicPrincipalId = amlRunEvents ? amlEvents.outputs.systemTopicPrincipalId : ''

// All role assignments live in modules/roles.bicep; it is deployed once per resource group it grants in.
module appRoles 'modules/roles.bicep' = {
  name: 'roles-app'
  scope: rg
  params: {
    grantsIn: 'appResourceGroup'
    appPrincipalId: identity.outputs.principalId
    amlComputePrincipalId: amlComputePrincipalId
    systemTopicPrincipalId: eventGrid.outputs.systemTopicPrincipalId
    storageAccountName: storage.outputs.name
    storageNames: storageNames
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventGridTopicName: eventGrid.outputs.topicName
    systemTopicName: eventGrid.outputs.systemTopicName
    amlWorkspaceName: amlWorkspaceName
    amlSystemTopicName: amlSystemTopicName
    amlSystemTopicPrincipalId: amlSystemTopicPrincipalId
  }
}

module amlRoles 'modules/roles.bicep' = {
  name: 'roles-aml-${resourceToken}'
  scope: resourceGroup(amlWorkspaceResourceGroup)
  params: {
    grantsIn: 'amlWorkspaceResourceGroup'
    appPrincipalId: identity.outputs.principalId
    amlComputePrincipalId: amlComputePrincipalId
    systemTopicPrincipalId: eventGrid.outputs.systemTopicPrincipalId
    storageAccountName: storage.outputs.name
    storageNames: storageNames
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventGridTopicName: eventGrid.outputs.topicName
    systemTopicName: eventGrid.outputs.systemTopicName
    amlWorkspaceName: amlWorkspaceName
    amlSystemTopicName: amlSystemTopicName
    amlSystemTopicPrincipalId: amlSystemTopicPrincipalId
    modelStorageAccountId: toLower(requiredColumns) == 'auto' ? azureMl.outputs.workspaceStorageAccountId : ''
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  // The host reaches storage with the identity from its first start: grant before creating the app.
  dependsOn: [
    appRoles
    amlRoles
  ]
  params: {
    name: appName
    planName: !empty(appServicePlanName) ? appServicePlanName : 'plan-dropscore-${resourceToken}'
    location: location
    tags: tags
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageNames: storageNames
    amlNames: amlNames
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventGridTopicEndpoint: eventGrid.outputs.topicEndpoint
    systemTopicId: eventGrid.outputs.systemTopicId
    blobEventSubscriptionName: blobEventSubscriptionName
    batchEndpointScoringUri: azureMl.outputs.scoringUri
    batchEndpointName: batchEndpointName
    batchDeploymentName: batchDeploymentName
    requiredColumns: requiredColumns
    amlWorkspaceId: azureMl.outputs.workspaceId
    amlRunEvents: amlRunEvents
    amlSystemTopicId: amlSystemTopicId
    amlEventSubscriptionName: amlEventSubscriptionName
    maxJobsInFlight: maxJobsInFlight
    shardThresholdMb: shardThresholdMb
    shardPartMb: shardPartMb
    routes: routes
    driftReference: driftReference
  }
}

// azd stores these in .azure/<env>/.env; infra/hooks/postdeploy.py reads them (or `az deployment sub show`).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName
output AZURE_FUNCTION_APP_ID string = functionApp.outputs.id
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_ACCOUNT_ID string = storage.outputs.id
output INPUT_CONTAINER_NAME string = storageNames.inputContainer
output DEAD_LETTER_CONTAINER_NAME string = storageNames.deadLetterContainer
output EVENTGRID_SYSTEM_TOPIC_NAME string = eventGrid.outputs.systemTopicName
output BLOB_EVENT_SUBSCRIPTION_NAME string = blobEventSubscriptionName
output BLOB_TRIGGER_FUNCTION_NAME string = 'on_input_blob'
output EVENTGRID_TOPIC_ENDPOINT string = eventGrid.outputs.topicEndpoint
// The hook subscribes aml_run_events only when AML_RUN_EVENTS_SETTING is 'on'. (Not named AML_RUN_EVENTS: azd
// writes outputs to the same .env that main.parameters.json reads the amlRunEvents parameter from.)
output AML_RUN_EVENTS_SETTING string = amlRunEvents ? 'on' : 'off'
output AML_SYSTEM_TOPIC_NAME string = amlSystemTopicName
output AML_SYSTEM_TOPIC_RESOURCE_GROUP string = amlWorkspaceResourceGroup
output AML_EVENT_SUBSCRIPTION_NAME string = amlEventSubscriptionName
output AML_EVENTS_FUNCTION_NAME string = 'aml_run_events'
output AML_WORKSPACE_ID string = azureMl.outputs.workspaceId
output BATCH_ENDPOINT_URI string = azureMl.outputs.scoringUri
