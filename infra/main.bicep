// `azd up` for Fine-tune Autopilot: the Function App and everything it owns, in a resource group of its own,
// wired to an EXISTING Azure ML workspace. Nothing is deployed into the workspace's resource group: `azd down`
// deletes every resource group a deployment put resources in, so the roles on the workspace and on the
// subscription are granted by the postprovision hook and removed by the predown hook (infra/hooks/azd_hooks.py).
// What it deploys, the roles and the hooks: docs/infrastructure.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; seeds the unique names of the resources.')
param environmentName string

@minLength(1)
@description('Region of the Function App and its storage (Flex Consumption must be offered there).')
@metadata({ azd: { type: 'location' } })
param location string

@minLength(1)
@description('The existing Azure ML workspace the app drives (in this subscription).')
param workspaceName string

@minLength(1)
@description('The resource group of that workspace.')
param workspaceResourceGroup string

@description('An Event Grid system topic the workspace already has (a resource has at most one); empty: one is created in the app\'s resource group.')
param existingWorkspaceTopicName string = ''

@description('The resource group of that existing system topic (default: the workspace\'s).')
param existingWorkspaceTopicResourceGroup string = ''

@description('Python version of the Function App (the app is tested on 3.11).')
@allowed(['3.11', '3.12'])
param pythonVersion string = '3.11'

// azd fills AZURE_PRINCIPAL_ID and AZURE_PRINCIPAL_TYPE with the signed-in principal (Azure/azure-dev,
// cli/azd/pkg/infra/provisioning/bicep/bicep_provider.go, evalParamEnvSubst), as the quickstart's principalId.
@description('Object id of the person or pipeline running azd up (AZURE_PRINCIPAL_ID); empty: no deployer roles.')
param principalId string = ''

@description('What principalId is (AZURE_PRINCIPAL_TYPE): User when a person runs azd, ServicePrincipal in CI.')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Grant the deployer the roles the documented commands need (infra/roles.json, deployerRoles).')
param grantDeployerAccess bool = true

@description('Alert on runs that end failed or deploy_failed (a scheduled query rule over Application Insights).')
param enableFailedRunAlert bool = false

@description('Where that alert is mailed; empty: it fires in Azure Monitor only.')
param alertEmail string = ''

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }

resource workspace 'Microsoft.MachineLearningServices/workspaces@2024-10-01' existing = {
  name: workspaceName
  scope: resourceGroup(workspaceResourceGroup)
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module app 'app/resources.bicep' = {
  name: 'autopilot-resources'
  scope: rg
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    pythonVersion: pythonVersion
    workspaceId: workspace.id
    workspaceName: workspaceName
    workspaceResourceGroup: workspaceResourceGroup
    workspaceLocation: workspace.location
    createWorkspaceTopic: empty(existingWorkspaceTopicName)
    deployerPrincipalId: principalId
    deployerPrincipalType: principalType
    grantDeployerAccess: grantDeployerAccess
    enableFailedRunAlert: enableFailedRunAlert
    alertEmail: alertEmail
  }
}

var topicResourceGroup = empty(existingWorkspaceTopicResourceGroup) ? workspaceResourceGroup : existingWorkspaceTopicResourceGroup

// Read by the hooks (azd puts every output into the environment).
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = app.outputs.functionAppName
output AZURE_FUNCTION_APP_HOSTNAME string = app.outputs.functionAppHostname
output AZURE_STORAGE_ACCOUNT_NAME string = app.outputs.storageAccountName
output AZURE_STORAGE_TOPIC_NAME string = app.outputs.storageTopicName
output AUTOPILOT_IDENTITY_PRINCIPAL_ID string = app.outputs.identityPrincipalId
// Who the hooks grant the deployer roles outside azd's group to (empty: nobody); azd keeps AZURE_PRINCIPAL_ID
// out of the environment file, so the hooks read it here.
output AUTOPILOT_DEPLOYER_PRINCIPAL_ID string = grantDeployerAccess ? principalId : ''
output AUTOPILOT_DEPLOYER_PRINCIPAL_TYPE string = principalType
output AUTOPILOT_CONFIG_CONTAINER string = app.outputs.configContainer
output AUTOPILOT_STATUS_CONTAINER string = app.outputs.statusContainer
output AZUREML_WORKSPACE_ID string = workspace.id
// The system topic the subscriptions go on, and whether azd made it (then `azd down` removes it with the group).
var existingTopicId = resourceId(subscription().subscriptionId, topicResourceGroup, 'Microsoft.EventGrid/systemTopics', existingWorkspaceTopicName)
output AZUREML_WORKSPACE_TOPIC_ID string = empty(existingWorkspaceTopicName) ? app.outputs.workspaceTopicId : existingTopicId
output AZUREML_WORKSPACE_TOPIC_OWNED bool = empty(existingWorkspaceTopicName)
