#!/usr/bin/env pwsh
<#
.SYNOPSIS
    The main job, shown end to end on a loopback registry: stage a nosi-style image with Install-DiskImageFromOras.

.DESCRIPTION
    Called by `build.ps1 -Task Demo` after the build (which installed the prerequisites). It starts a loopback
    registry with the test kit, publishes a generated nosi-style image (a realistic raw disk, gzip-compressed,
    with its .sha256 sidecar and metadata.json), runs Install-DiskImageFromOras into -DemoPath, prints the
    result object and `qemu-img info`, runs it again to show the skip by digest, and stops the registry.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TestKitPath,
    [Parameter(Mandatory)] [string] $DemoPath
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

Import-Module (Join-Path $PSScriptRoot '../tests/TestKit.psm1') -Force
Import-Module $ModulePath -Force
$null = New-Item -ItemType Directory -Force $DemoPath
$work = Join-Path ([IO.Path]::GetTempPath()) ("orasstaging-demo-" + [guid]::NewGuid().ToString('n').Substring(0, 8))
$null = New-Item -ItemType Directory -Force $work

$registry = Start-TestRegistry -Auth anonymous -TestKitPath $TestKitPath
try {
    Write-Host "Registry: http://$($registry.Authority) (loopback, anonymous)"
    $raw = Join-Path $work 'debian-13-amd64.img'
    $null = New-TestDiskImage -Path $raw -Size 96MB -Seed 13
    $published = Publish-TestImage -Registry $registry -Repository 'lab/nosi/debian-13-headless' -Tag 'latest' -Path $raw
    $reference = "oras://$($registry.Authority)/lab/nosi/debian-13-headless:latest"
    Write-Host "Published $reference (layer $($published.Digest))"

    $target = Join-Path $DemoPath 'debian-13-amd64.qcow2'
    Write-Host ''
    Write-Host "> Install-DiskImageFromOras $reference -Path $target -GrowBy 8GB -Force"
    $result = Install-DiskImageFromOras $reference -Path $target -GrowBy 8GB -Force -Verbose
    $result | Format-List | Out-Host

    Write-Host "> qemu-img info $target"
    & qemu-img info $target | Out-Host
    Write-Host "> Get-Content $target.digest"
    Get-Content "$target.digest" | Out-Host

    Write-Host ''
    Write-Host "> Install-DiskImageFromOras $reference -Path $target   # again: the stamp matches, nothing is pulled"
    Install-DiskImageFromOras $reference -Path $target | Format-Table Name, Skipped, SkipReason, Digest -Wrap | Out-Host
}
finally {
    Stop-TestRegistry $registry
    Remove-Item $work -Recurse -Force -ErrorAction Ignore
}
