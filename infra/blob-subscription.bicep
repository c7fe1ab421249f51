// The BlobCreated subscription that drives the blob trigger (Event Grid source). Deployed by
// infra/hooks/postdeploy.py after code deploy: its webhook needs the blob extension's system key, which the
// host creates only once the function code is running. The key arrives as a secure parameter (never logged).
targetScope = 'resourceGroup'

@description('The Event Grid system topic on the app storage account (main.bicep output EVENTGRID_SYSTEM_TOPIC_NAME).')
param systemTopicName string

@description('Name of the subscription; the app setting BLOB_EVENT_SUBSCRIPTION_ID points at it.')
param subscriptionName string

@description('Default host name of the Function App (main.bicep output AZURE_FUNCTION_APP_HOSTNAME).')
param functionAppHostName string

@description('The blob-triggered function (function_app.py).')
param functionName string = 'on_input_blob'

@secure()
@description('The blobs_extension system key of the Function App (az functionapp keys list).')
param blobExtensionKey string

@description('Container whose CSV uploads start jobs.')
param inputContainerName string

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

resource blobCreated 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = {
  parent: systemTopic
  name: subscriptionName
  properties: {
    // The blob extension webhook expects the Event Grid schema.
    eventDeliverySchema: 'EventGridSchema'
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${functionAppHostName}/runtime/webhooks/blobs?functionName=Host.Functions.${functionName}&code=${blobExtensionKey}'
        maxEventsPerBatch: 1
        preferredBatchSizeInKilobytes: 64
      }
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${inputContainerName}/'
      subjectEndsWith: '.csv'
      // One upload can raise several BlobCreated events; only these APIs mean a committed blob.
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: [
            'PutBlob'
            'PutBlockList'
            'CopyBlob'
            'FlushWithClose'
          ]
        }
      ]
    }
    retryPolicy: {
      maxDeliveryAttempts: maxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
    }
    // Written with the system topic's own identity (Storage Blob Data Contributor on this container only).
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

output subscriptionId string = blobCreated.id
