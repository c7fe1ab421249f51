// The Event Grid system topic on the existing Azure ML workspace, deployed into the workspace's resource group:
// its RunStatusChanged events feed the `aml_run_events` function (the fast completion path; the poller stays as
// the backstop). The subscription on it is created after code deploy by infra/hooks/postdeploy.py
// (infra/aml-run-events-subscription.bicep): Event Grid refuses an AzureFunction destination that does not exist yet.
// A source can have only one system topic: when the workspace already has one, main.bicep passes its name
// (workspaceSystemTopicName) and it is used as it is, never modified.

@description('amlRunEvents: create or use the system topic; false = nothing here is deployed.')
param enabled bool

@description('Name of the existing Azure ML workspace (the source of the events).')
param workspaceName string

@description('An existing system topic on the workspace, in this resource group, with a system-assigned identity; empty = create one.')
param existingSystemTopicName string

@description('Name of the system topic to create when existingSystemTopicName is empty.')
param systemTopicName string

param tags object

var createTopic = enabled && empty(existingSystemTopicName)
var useExistingTopic = enabled && !empty(existingSystemTopicName)

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-04-01' existing = {
  name: workspaceName
}

// A system topic lives in its source's region (the workspace's, which may differ from the app's).
resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createTopic) {
  name: systemTopicName
  location: workspace.location
  tags: tags
  // Its own identity writes dead-lettered run events to the dead-letter container (roles.bicep grants it there only).
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    source: workspace.id
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

// Read only when useExistingTopic ('unused' keeps the name valid when it is not).
resource existingSystemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: empty(existingSystemTopicName) ? 'unused' : existingSystemTopicName
}

// Empty when disabled; each branch reads only the topic that is in use.
output systemTopicName string = createTopic ? systemTopic.name : (useExistingTopic ? existingSystemTopic.name : '')
output systemTopicId string = createTopic ? systemTopic.id : (useExistingTopic ? existingSystemTopic.id : '')
output systemTopicPrincipalId string = createTopic ? systemTopic.identity.principalId : (useExistingTopic ? existingSystemTopic.identity.principalId : '')
