// The run events subscription that drives `aml_run_events` (the fast completion path: a job's end reaches the app
// as an event instead of on the next poll). Deployed by infra/hooks/postdeploy.py into the workspace's resource
// group, after code deploy, like the BlobCreated subscription: Event Grid checks that an AzureFunction destination
// exists when the subscription is created, and the function exists only once the code is deployed and indexed.
// No key passes through here: for an AzureFunction destination Event Grid fetches the function's key itself.
targetScope = 'resourceGroup'

@description('The Event Grid system topic on the Azure ML workspace (main.bicep output AML_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Name of the subscription; the app setting AML_EVENT_SUBSCRIPTION_ID points at it.')
param subscriptionName string

@description('Resource id of the Function App (main.bicep output AZURE_FUNCTION_APP_ID).')
param functionAppId string

@description('The Event Grid triggered function (function_app.py).')
param functionName string = 'aml_run_events'

@description('Resource id of the app storage account (dead-letter destination).')
param storageAccountId string

@description('Container for events Event Grid could not deliver.')
param deadLetterContainerName string

@description('Delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 30

@description('Minutes an undelivered event is retried before it is dead-lettered.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 1440

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: systemTopicName
}

resource runEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    // The Event Grid trigger reads either schema; this is the one Azure ML's events are documented in.
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${functionAppId}/functions/${functionName}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.MachineLearningServices.RunStatusChanged'
      ]
      // Only a run's end, and only dropscore's runs: job names are `dropscore-<hash>-<attempt>`
      // (shared/core/naming.aml_job_name), and a job's run id is its name. String filters ignore case.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.runStatus'
          values: [
            'Completed'
            'Failed'
            'Canceled'
          ]
        }
        {
          operatorType: 'StringBeginsWith'
          key: 'data.runId'
          values: [
            'dropscore-'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Written with the workspace system topic's own identity (Storage Blob Data Contributor on this container only).
    deadLetterWithResourceIdentity: {
      identity: {
        type: 'SystemAssigned'
      }
      deadLetterDestination: {
        endpointType: 'StorageBlob'
        properties: {
          resourceId: storageAccountId
          blobContainerName: deadLetterContainerName
        }
      }
    }
  }
}

output subscriptionId string = runEvents.id
