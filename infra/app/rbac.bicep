// The role assignments inside azd's resource group (infra/roles.json says which and why), as app/rbac.bicep of
// Azure-Samples/functions-quickstart-python-azd-eventgrid-blob writes them: the principals arrive as parameters,
// so each assignment's name, guid(scope, principal, role), is known when this deployment starts (Bicep error
// BCP120 otherwise: the identity's principalId is a module output in resources.bicep). The roles on the
// workspace and the subscription are outside azd's group: infra/hooks/azd_hooks.py grants and removes them.
param storageAccountName string
param appInsightsName string
@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string
@description('Object id of the person (or pipeline) who runs azd up; empty: nobody gets the deployer roles.')
param deployerPrincipalId string = ''
@allowed(['User', 'ServicePrincipal', 'Group'])
param deployerPrincipalType string = 'User'
@description('Grant the deployer roles of infra/roles.json (on by default, as in the quickstart).')
param grantDeployerAccess bool = true

var roles = loadJsonContent('../roles.json')
var grantDeployer = grantDeployerAccess && !empty(deployerPrincipalId)

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in filter(roles.roles, r => r.scope == 'storage'): {
    name: guid(storageAccount.id, appPrincipalId, role.id)
    scope: storageAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      description: role.why
    }
  }
]

resource appInsightsRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in filter(roles.roles, r => r.scope == 'appInsights'): {
    name: guid(appInsights.id, appPrincipalId, role.id)
    scope: appInsights
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      description: role.why
    }
  }
]

// What the documented commands need of the app's storage (configs, status, the ledger), for the deployer.
resource deployerStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in filter(roles.deployerRoles, r => r.scope == 'storage'): if (grantDeployer) {
    name: guid(storageAccount.id, deployerPrincipalId, role.id)
    scope: storageAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalId: deployerPrincipalId
      principalType: deployerPrincipalType
      description: role.why
    }
  }
]
