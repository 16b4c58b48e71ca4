# azd preprovision hook (Windows): same as preprovision.sh.
#  1. The deployment subscription has the Microsoft.App resource provider (Flex Consumption runs on it).
#  2. Narrowing the hub scopes removes the rotator's access that a redeploy would otherwise leave behind.
#  3. The custom hub role exists, and every hub subscription sees it, before main.bicep assigns it.
# Needs the Azure CLI, signed in to the same tenant as azd (`az login`). Safe to run again; nothing secret is printed.
$ErrorActionPreference = 'Stop'

foreach ($name in 'AZURE_ENV_NAME', 'AZURE_LOCATION', 'AZURE_SUBSCRIPTION_ID') {
  if (-not [Environment]::GetEnvironmentVariable($name)) {
    throw "preprovision: $name is not set; run this through azd (azd provision / azd up) or set it."
  }
}

$readerRole = 'acdd72a7-3385-48ef-bd42-f606fba81ae7'
$waitSeconds = if ($env:ROTATOR_ROLE_WAIT_SECONDS) { [int]$env:ROTATOR_ROLE_WAIT_SECONDS } else { 10 }

# A comma-separated list as trimmed lower-case entries.
function Get-Entries([string]$list) {
  @(($list -split ',') | ForEach-Object { $_.Trim().ToLowerInvariant() } | Where-Object { $_ })
}

function Invoke-Az {
  $output = & az @args
  if ($LASTEXITCODE -ne 0) { throw "preprovision: az $($args[0..2] -join ' ') failed." }
  $output
}

# 1. Microsoft.App
$state = az provider show --namespace Microsoft.App --subscription $env:AZURE_SUBSCRIPTION_ID `
  --query registrationState --output tsv 2>$null
if (-not $state) { $state = 'Unknown' }
if ($state -ne 'Registered') {
  throw @"
preprovision: the Microsoft.App resource provider is "$state" in subscription $env:AZURE_SUBSCRIPTION_ID.
The Flex Consumption plan needs it. Register it once (it takes a few minutes), then run azd up again:
  az provider register --namespace Microsoft.App --subscription $env:AZURE_SUBSCRIPTION_ID --wait
"@
}

# What this provision will grant.
$hubSubscriptions = Get-Entries $env:ROTATOR_HUB_SUBSCRIPTION_IDS
if ($hubSubscriptions.Count -eq 0) { $hubSubscriptions = Get-Entries $env:AZURE_SUBSCRIPTION_ID }
$hubResourceGroups = Get-Entries $env:ROTATOR_HUB_RESOURCE_GROUP_IDS

# 2. Narrowing: only after an earlier provision, whose outputs name the role, the identity and the old subscriptions.
$roleId = $env:HUB_KEY_UPDATER_ROLE_ID
$principal = $env:AZURE_FUNCTION_PRINCIPAL_ID
if ($roleId -and $principal) {
  foreach ($subscription in Get-Entries $env:ROTATOR_SUBSCRIPTION_IDS) {
    $assignments = Invoke-Az role assignment list --subscription $subscription --all --role $roleId `
      --query "[?principalId=='$principal'].[scope, id]" --output tsv
    foreach ($line in @($assignments)) {
      if (-not $line) { continue }
      $scope, $id = $line -split "`t"
      $keep = if ($hubResourceGroups.Count -eq 0) {
        ($hubSubscriptions -contains $subscription) -and ($scope.ToLowerInvariant() -eq "/subscriptions/$subscription")
      } else {
        $hubResourceGroups -contains $scope.ToLowerInvariant()
      }
      if ($keep) { continue }
      Write-Host "preprovision: removing the hub role's assignment on $scope (no longer in the hub scopes)"
      Invoke-Az role assignment delete --ids $id --output none | Out-Null
    }
    if ($hubSubscriptions -contains $subscription) { continue }
    $readers = Invoke-Az role assignment list --subscription $subscription --role $readerRole `
      --scope "/subscriptions/$subscription" --query "[?principalId=='$principal'].id" --output tsv
    foreach ($id in @($readers)) {
      if (-not $id) { continue }
      Write-Host "preprovision: removing the rotator's Reader on /subscriptions/$subscription (no longer a hub subscription)"
      Invoke-Az role assignment delete --ids $id --output none | Out-Null
    }
  }
}

# 3. The custom role, from the same module main.bicep deploys, then wait until each hub subscription can see it.
$roleGuid = Invoke-Az deployment sub create `
  --subscription $env:AZURE_SUBSCRIPTION_ID `
  --location $env:AZURE_LOCATION `
  --name "cmk-rotator-role-$env:AZURE_ENV_NAME" `
  --template-file (Join-Path $PSScriptRoot '..' 'modules' 'hub-key-updater-role.bicep') `
  --parameters `
    environmentName=$env:AZURE_ENV_NAME `
    location=$env:AZURE_LOCATION `
    hubSubscriptionIds="$env:ROTATOR_HUB_SUBSCRIPTION_IDS" `
  --query properties.outputs.roleDefinitionGuid.value --output tsv
foreach ($subscription in $hubSubscriptions) {
  $attempt = 1
  while ((az role definition list --scope "/subscriptions/$subscription" --name $roleGuid --custom-role-only true `
        --query 'length(@)' --output tsv 2>$null) -ne '1') {
    if ($attempt -ge 30) {
      throw "preprovision: subscription $subscription still does not see role $roleGuid; run azd provision again in a few minutes."
    }
    $attempt++
    Start-Sleep -Seconds $waitSeconds
  }
}
Write-Host "preprovision: Microsoft.App registered; hub role $roleGuid visible in $($hubSubscriptions.Count) subscription(s)."
