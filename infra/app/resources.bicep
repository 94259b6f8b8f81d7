// Everything `azd up` creates, in azd's own resource group: identity, storage (no shared keys), monitoring,
// the Flex Consumption Function App (app/processor.bicep), the roles in this group (app/rbac.bicep), and the
// Event Grid system topics. Modules are Azure Verified Modules pinned as in
// Azure-Samples/functions-quickstart-python-azd-eventgrid-blob (storage and the site are resources, see below).
// As there, a module's outputs go to the modules that need them as parameters: a resource's name, scope,
// identity keys and loop sources must be known when the deployment starts (docs/infrastructure.md).
param location string
param tags object
param resourceToken string
param pythonVersion string
param workspaceId string
param workspaceName string
param workspaceResourceGroup string
param workspaceLocation string
param createWorkspaceTopic bool
param deployerPrincipalId string = ''
param deployerPrincipalType string = 'User'
param grantDeployerAccess bool = true
param configContainer string = 'training-configs'
param statusContainer string = 'training-status'
param ledgerTable string = 'autopilotruns'
@description('The follow-up queue (docs/follow-ups.md): checks a run schedules for when their answer is due.')
param followUpQueue string = 'autopilot-followups'
@description('Alert on runs that end failed or deploy_failed (infra/app/monitoring.bicep).')
param enableFailedRunAlert bool = false
@description('Where that alert is mailed; empty: Azure Monitor only.')
param alertEmail string = ''

var abbrs = loadJsonContent('../abbreviations.json')
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
var storageAccountName = '${abbrs.storageStorageAccounts}${resourceToken}'
var deploymentContainer = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

module identity 'br/public:avm/res/managed-identity/user-assigned-identity:0.4.1' = {
  name: 'identity'
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}autopilot-${resourceToken}'
    location: location
    tags: tags
  }
}

// Storage and the Function App are written as resources, not registry modules: checkov runs offline and
// cannot see inside a module it cannot download, and these two hold the data and run the code.
resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    // checkov:skip=CKV_AZURE_206: LRS is what the Functions quickstarts use; the ledger and status can be rebuilt from the workspace (jobs, models, endpoints carry the run tags), so geo-replication buys little
    name: 'Standard_LRS'
  }
  properties: {
    // checkov:skip=CKV_AZURE_59: public network access is on for the same reason as CKV_AZURE_35; blob public access is off (allowBlobPublicAccess: false)
    // checkov:skip=CKV_AZURE_43: the name is 'st' + uniqueString() (13 lowercase letters and digits): 15 characters, valid; checkov cannot evaluate the expression
    // checkov:skip=CKV_AZURE_35: the Functions host, Event Grid deliveries and the deployer reach it over the internet (Flex Consumption without a VNet); access is Entra ID only (no shared keys), denied by RBAC
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity-based connections only (AzureWebJobsStorage__*)
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
  parent: storageAccount
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in [deploymentContainer, configContainer, statusContainer]: {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
}

resource ledger 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: ledgerTable
}

// Follow-ups: messages with a visibility delay, read by the queue trigger (functions/followups.py); the host
// moves a message that failed maxDequeueCount times (host.json) to '<queue>-poison'. Both exist before the app
// runs, so the trigger never starts on a missing queue. The marks that keep a chain single are in the ledger.
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storageAccount
  name: 'default'
}

resource followUpQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in [followUpQueue, '${followUpQueue}-poison']: {
    parent: queueService
    name: queue
  }
]

module logAnalytics 'br/public:avm/res/operational-insights/workspace:0.11.1' = {
  name: 'loganalytics'
  params: {
    name: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    location: location
    tags: tags
    dataRetention: 30
  }
}

// A name known when the deployment starts: monitoring.bicep's existing reference needs one (not the module's output).
var appInsightsName = '${abbrs.insightsComponents}${resourceToken}'

module monitoring 'br/public:avm/res/insights/component:0.6.0' = {
  name: 'appinsights'
  params: {
    name: appInsightsName
    location: location
    tags: tags
    workspaceResourceId: logAnalytics.outputs.resourceId
    disableLocalAuth: true
  }
}

module plan 'br/public:avm/res/web/serverfarm:0.1.1' = {
  name: 'plan'
  params: {
    name: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    sku: {
      name: 'FC1'
      tier: 'FlexConsumption'
    }
    reserved: true
  }
}

// The settings shared/settings.py reads (tests/infra checks every key here is one of them or the platform's).
var appSettings = {
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.outputs.clientId
  AzureWebJobsStorage__blobServiceUri: 'https://${storageAccountName}.blob.${environment().suffixes.storage}'
  AzureWebJobsStorage__queueServiceUri: 'https://${storageAccountName}.queue.${environment().suffixes.storage}'
  AzureWebJobsStorage__tableServiceUri: 'https://${storageAccountName}.table.${environment().suffixes.storage}'
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.connectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.outputs.clientId};Authorization=AAD'
  // The worker streams the app's OpenTelemetry logs itself (no duplicate host entries); function_app.py
  // configures the Azure Monitor distro (https://learn.microsoft.com/azure/azure-functions/opentelemetry-howto).
  PYTHON_ENABLE_OPENTELEMETRY: 'true'
  AUTOPILOT_PLATFORM: 'azureml'
  AZUREML_SUBSCRIPTION_ID: subscription().subscriptionId
  AZUREML_RESOURCE_GROUP: workspaceResourceGroup
  AZUREML_WORKSPACE_NAME: workspaceName
  AZURE_CLIENT_ID: identity.outputs.clientId
  AUTOPILOT_WORKSPACE_TOPIC: workspaceId
  // Flex Consumption supports only the Event Grid source for blob triggers.
  AUTOPILOT_BLOB_SOURCE: 'EventGrid'
  AUTOPILOT_CONFIG_CONTAINER: configContainer
  AUTOPILOT_STATUS_CONTAINER: statusContainer
  AUTOPILOT_LEDGER_TABLE: ledgerTable
  AUTOPILOT_FOLLOW_UP_QUEUE: followUpQueue
  // 'false' turns the follow-ups off (the timers alone then finish runs); docs/follow-ups.md.
  AUTOPILOT_FOLLOW_UPS: 'true'
}

module processor 'processor.bicep' = {
  name: 'processor'
  dependsOn: [containers, followUpQueues] // the package container, and the trigger's queue, before the app
  params: {
    name: functionAppName
    location: location
    tags: tags
    planId: plan.outputs.resourceId
    identityId: identity.outputs.resourceId
    storageAccountName: storageAccount.name
    deploymentContainer: deploymentContainer
    pythonVersion: pythonVersion
    appSettings: appSettings
  }
}

module runMonitoring 'monitoring.bicep' = {
  name: 'run-monitoring'
  dependsOn: [monitoring]
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    appInsightsName: appInsightsName
    enableFailedRunAlert: enableFailedRunAlert
    alertEmail: alertEmail
  }
}

module rbac 'rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storageAccount.name
    appInsightsName: monitoring.outputs.name
    appPrincipalId: identity.outputs.principalId
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    grantDeployerAccess: grantDeployerAccess
  }
}

// The storage account's topic: BlobCreated in the config container reaches the blob trigger (Event Grid
// source); the subscription needs the blobs_extension key, so the postdeploy hook (infra/hooks/azd_hooks.py)
// creates it.
module storageTopic 'br/public:avm/res/event-grid/system-topic:0.6.1' = {
  name: 'storagetopic'
  params: {
    name: '${abbrs.eventGridSystemTopics}st-${resourceToken}'
    location: location
    tags: tags
    source: storageAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

// The workspace's topic, in azd's group (so `azd down` removes it) and in the workspace's region. Skipped when
// the workspace already has one: Event Grid allows one system topic per source resource.
module workspaceTopic 'br/public:avm/res/event-grid/system-topic:0.6.1' = if (createWorkspaceTopic) {
  name: 'workspacetopic'
  params: {
    name: '${abbrs.eventGridSystemTopics}mlw-${resourceToken}'
    location: workspaceLocation
    tags: tags
    source: workspaceId
    topicType: 'Microsoft.MachineLearningServices.Workspaces'
  }
}

output functionAppName string = processor.outputs.name
output functionAppHostname string = processor.outputs.defaultHostName
output storageAccountName string = storageAccount.name
output storageTopicName string = storageTopic.outputs.name
output identityPrincipalId string = identity.outputs.principalId
output configContainer string = configContainer
output statusContainer string = statusContainer
output workspaceTopicId string = createWorkspaceTopic ? workspaceTopic.outputs.resourceId : ''
