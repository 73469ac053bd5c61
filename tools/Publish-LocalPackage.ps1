#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Publishes the built module as a .nupkg into a local file repository with Publish-PSResource.

.DESCRIPTION
    PSResourceGet ships with PowerShell 7.4 and later. The repository is registered (trusted) only for the
    publish and unregistered afterwards, so the user's repository list is left as it was. Writes the .nupkg's
    FileInfo.

.EXAMPLE
    ./tools/Publish-LocalPackage.ps1 -ModuleOut out/OrasStaging/0.1.0 -RepositoryPath out/repo
#>
[CmdletBinding()]
[OutputType([System.IO.FileInfo])]
param(
    # The built module folder (holding OrasStaging.psd1).
    [Parameter(Mandatory)]
    [string] $ModuleOut,

    # The folder that serves as the file repository; created when missing.
    [Parameter(Mandatory)]
    [string] $RepositoryPath,

    [string] $RepositoryName = 'OrasStagingLocal'
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$manifestPath = Join-Path $ModuleOut 'OrasStaging.psd1'
if (-not (Test-Path -LiteralPath $manifestPath)) { throw "No built module at $manifestPath; run build.ps1 first." }
$manifest = Import-PowerShellDataFile $manifestPath
$version = $manifest.ModuleVersion

$null = New-Item -ItemType Directory -Force $RepositoryPath
$repository = (Resolve-Path -LiteralPath $RepositoryPath).ProviderPath
# A republish of the same version would be refused; the repository holds what this build produced.
Get-ChildItem -LiteralPath $repository -Filter "orasstaging.$version.nupkg" -ErrorAction Ignore | Remove-Item -Force

# PSResourceGet keeps its repository list under LocalApplicationData and NuGet its config under ApplicationData.
# On Unix .NET reports such a folder as '' while it does not exist, and they then write PSResourceGet/ and
# NuGet/ folders into the current directory.
if (-not [Environment]::GetFolderPath('LocalApplicationData')) {
    $null = New-Item -ItemType Directory -Force $(if ($env:XDG_DATA_HOME) { $env:XDG_DATA_HOME } else { Join-Path $HOME '.local/share' })
}
if (-not [Environment]::GetFolderPath('ApplicationData')) {
    $null = New-Item -ItemType Directory -Force $(if ($env:XDG_CONFIG_HOME) { $env:XDG_CONFIG_HOME } else { Join-Path $HOME '.config' })
}

if (Get-PSResourceRepository -Name $RepositoryName -ErrorAction Ignore) {
    throw "A PSResource repository named '$RepositoryName' is already registered; unregister it or pass -RepositoryName."
}
Register-PSResourceRepository -Name $RepositoryName -Uri $repository -Trusted
try {
    # Publish-PSResource wants the module in a folder named like the module, not like its version.
    $staging = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-publish-" + [guid]::NewGuid().ToString('n'))
    $moduleCopy = Join-Path $staging 'OrasStaging'
    $null = New-Item -ItemType Directory -Force $moduleCopy
    try {
        Copy-Item -Path (Join-Path $ModuleOut '*') -Destination $moduleCopy -Recurse
        Publish-PSResource -Path $moduleCopy -Repository $RepositoryName
    }
    finally {
        Remove-Item -LiteralPath $staging -Recurse -Force -ErrorAction Ignore
    }
}
finally {
    Unregister-PSResourceRepository -Name $RepositoryName
}

$package = Get-ChildItem -LiteralPath $repository -Filter '*.nupkg' |
    Where-Object { $_.Name -ieq "OrasStaging.$version.nupkg" }
if (-not $package) { throw "Publish-PSResource produced no OrasStaging.$version.nupkg in $repository." }
Write-Host "Published $($package.FullName)"
$package
