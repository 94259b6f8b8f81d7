// What a person watching the app gets on Azure (docs/observability.md): a workbook over the app's span events
// in Application Insights (runs by state, minutes from drop to deployed, what cleanup saved) and, when
// enableFailedRunAlert is set, a scheduled query rule that alerts once per run that ends failed or deploy_failed.
// The queries are files beside this one, checked against the names the code sets
// (tests/functional/shared/test_telemetry.py).
param location string
param tags object
param resourceToken string
@description('Name of the Application Insights component the app writes to.')
param appInsightsName string
@description('Alert on runs that end failed or deploy_failed (off by default).')
param enableFailedRunAlert bool = false
@description('Where the alert is mailed; empty: the alert fires in Azure Monitor only.')
param alertEmail string = ''

var mailAlert = enableFailedRunAlert && !empty(alertEmail)

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (mailAlert) {
  name: 'ag-autopilot-${resourceToken}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'autopilot'
    enabled: true
    emailReceivers: [
      {
        name: 'owner'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

resource failedRunAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = if (enableFailedRunAlert) {
  name: 'alert-autopilot-failed-runs-${resourceToken}'
  location: location
  tags: tags
  properties: {
    displayName: 'Fine-tune Autopilot: a run ended failed or deploy_failed'
    description: 'One alert per run (dimension run_id); the state change event carries the error code and reason.'
    severity: 2
    enabled: true
    scopes: [appInsights.id]
    evaluationFrequency: 'PT15M'
    windowSize: 'PT15M'
    criteria: {
      allOf: [
        {
          query: loadTextContent('monitoring/failed-runs.kql')
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            { name: 'run_id', operator: 'Include', values: ['*'] }
            { name: 'state', operator: 'Include', values: ['*'] }
            { name: 'code', operator: 'Include', values: ['*'] }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: false
    actions: {
      actionGroups: mailAlert ? [actionGroup.id] : []
    }
  }
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, 'autopilot-runs-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Fine-tune Autopilot runs'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: loadTextContent('monitoring/workbook.json')
  }
}

output workbookId string = workbook.id
