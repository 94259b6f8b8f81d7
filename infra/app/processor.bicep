// The Flex Consumption Function App, as app/processor.bicep of Azure-Samples/functions-quickstart-python-azd-eventgrid-blob
// writes it: the identity and the settings arrive as parameters. Inside this module they are known when its
// deployment starts, which the identity map's keys and the source of the settings loop must be (Bicep errors
// BCP120 and BCP178); in resources.bicep they are module outputs, known only later (docs/infrastructure.md).
// A resource, not the registry's web/site module: checkov runs offline and cannot see inside a module.
param name string
param location string
param tags object
param planId string
@description('Resource id of the user-assigned identity the app runs as.')
param identityId string
param storageAccountName string
param deploymentContainer string
param pythonVersion string
@description('App settings, name -> value (resources.bicep builds them from the other modules\' outputs).')
param appSettings object

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_213: the app has no HTTP function a health check could probe (triggers are blob, Event Grid, timer); the platform restarts a failed host
  // checkov:skip=CKV_AZURE_17: client certificates would lock out Event Grid's webhook deliveries; the webhooks are guarded by the extension system keys
  // checkov:skip=CKV_AZURE_222: public access is needed for Event Grid's webhook deliveries (no VNet, see the storage account)
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales out by itself; instance count is not a site setting there
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'app' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(appSettings): { name: setting.key, value: setting.value }]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageAccount.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: 2048
        maximumInstanceCount: 40
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
