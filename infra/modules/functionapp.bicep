// The Flex Consumption plan and the Linux Function App. Its only identity is the user-assigned one; no app
// setting holds a key, a SAS or a storage connection string (tests/infra checks it).
param name string
param planName string
param location string
param tags object
param pythonVersion string
param maximumInstanceCount int
param instanceMemoryMB int
param identityId string
param identityClientId string
param storageAccountName string
param storageBlobEndpoint string
param storageNames object
param amlNames object
param applicationInsightsName string
param eventGridTopicEndpoint string
param systemTopicId string
param blobEventSubscriptionName string
param batchEndpointScoringUri string
param batchEndpointName string
param batchDeploymentName string
param requiredColumns string
param amlWorkspaceId string

@description('The fast completion path is on: the workspace system topic (amlSystemTopicId) delivers run events to aml_run_events.')
param amlRunEvents bool

@description('Resource id of the workspace system topic; empty when amlRunEvents is false.')
param amlSystemTopicId string

@description('Name of the run events subscription on it (infra/hooks/postdeploy.py creates it).')
param amlEventSubscriptionName string

param maxJobsInFlight int
param shardThresholdMb int
param shardPartMb int
param routes string
param driftReference string

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225:Zone redundancy for Flex Consumption exists only in some regions; turn on zoneRedundant where the chosen region supports it.
  name: planName
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

// Exactly the settings shared/config.py and the host read. FUNCTIONS_WORKER_RUNTIME is not set: Flex
// Consumption takes the runtime from functionAppConfig and rejects that setting.
var appSettings = {
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  BLOB_TRIGGER_SOURCE: 'EventGrid'
  INPUT_CONTAINER: storageNames.inputContainer
  OUTPUT_CONTAINER: storageNames.outputContainer
  ARCHIVE_CONTAINER: storageNames.archiveContainer
  FAILED_CONTAINER: storageNames.failedContainer
  REJECTED_CONTAINER: storageNames.rejectedContainer
  JOBS_TABLE: storageNames.jobsTable
  ACTIVE_JOBS_TABLE: storageNames.activeJobsTable
  JOB_LIST_TABLE: storageNames.jobListTable
  COMPLETIONS_QUEUE: storageNames.completionsQueue
  POLL_SCHEDULE: '0 */1 * * * *'
  BATCH_ENDPOINT_URI: batchEndpointScoringUri
  BATCH_ENDPOINT_NAME: batchEndpointName
  BATCH_DEPLOYMENT: batchDeploymentName
  REQUIRED_COLUMNS: requiredColumns
  AML_WORKSPACE_ID: amlWorkspaceId
  AML_INPUT_DATASTORE: amlNames.inputDatastore
  AML_OUTPUT_DATASTORE: amlNames.outputDatastore
  AML_OUTPUT_CONTAINER: storageNames.amlOutputsContainer
  EVENTGRID_TOPIC_ENDPOINT: eventGridTopicEndpoint
  EVENT_SCHEMA: 'cloudevents'
  EVENT_SOURCE: resourceId('Microsoft.Web/sites', name)
  BLOB_EVENT_SUBSCRIPTION_ID: '${systemTopicId}/eventSubscriptions/${blobEventSubscriptionName}'
  AML_RUN_EVENTS: amlRunEvents ? 'on' : 'off'
  AML_EVENT_SUBSCRIPTION_ID: amlRunEvents ? '${amlSystemTopicId}/eventSubscriptions/${amlEventSubscriptionName}' : ''
  // App settings are strings.
  MAX_JOBS_IN_FLIGHT: string(maxJobsInFlight)
  SHARD_THRESHOLD_MB: string(shardThresholdMb)
  SHARD_PART_MB: string(shardPartMb)
  ROUTES: routes
  DRIFT_REFERENCE: driftReference
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222:Event Grid delivers BlobCreated and Azure ML run events to the app's public webhooks; closing public access needs VNet integration and private endpoints (not part of this template). Every route needs a key.
  // checkov:skip=CKV_AZURE_17:No client certificates: Event Grid cannot present one; the HTTP API uses function keys and the blob webhook the blobs_extension system key.
  // checkov:skip=CKV_AZURE_212:Flex Consumption scales from zero; always-ready (minimum) instances are billed while idle and are off by default (maximumInstanceCount bounds the scale-out).
  // checkov:skip=CKV_AZURE_213:The platform health probe calls anonymously; dropscore's GET /api/health needs the admin key, so the probe would always fail. Use the health endpoint and python -m shared.doctor instead.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
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
    clientCertEnabled: false
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${storageNames.deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        // Always-ready instances are billed while idle: none by default (cold starts accepted).
        alwaysReady: []
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        for setting in items(appSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
