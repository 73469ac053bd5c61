#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Where a new pwsh that imports the module and stages an image spends its time (issue 12, cold start).
.DESCRIPTION
    Starts a loopback registry, publishes a small generated image and, Repetitions times, runs a new pwsh that
    stamps a stopwatch after: Import-Module; the first Resolve-OrasImage (first HTTP setup and the JIT of the
    resolve path); the first install (the JIT of the download, decode and write paths); a second install of the
    same image (-Force: the warm cost of the same work). Process start is the child's wall time minus its own
    stopwatch. Prints each step's median and its share of the cold total; the machine's load makes absolute
    seconds unreliable, the shares less so.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TestKitPath,
    [long] $ImageSize = 64MB,
    [ValidateRange(1, 50)] [int] $Repetitions = 5,
    [string] $WorkPath = (Join-Path ([IO.Path]::GetTempPath()) 'orasstaging-coldstart')
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$ModulePath = (Resolve-Path $ModulePath).Path
$env:ORASSTAGING_TESTKIT = (Resolve-Path $TestKitPath).Path
$null = New-Item -ItemType Directory -Force $WorkPath
Import-Module (Join-Path $PSScriptRoot 'BenchKit.psm1') -Force
Import-Module (Join-Path $PSScriptRoot '../../tests/TestKit.psm1') -Force
$raw = Join-Path $WorkPath 'cold.img'
if (-not (Test-Path $raw)) { $null = New-TestDiskImage -Path $raw -Size $ImageSize -Seed 3 }

$registry = Start-TestRegistry -Auth anonymous
try {
    $image = Publish-TestImage -Registry $registry -Repository 'bench/cold' -Tag 'v1' -ImagePath $raw
    $reference = "oras://$($registry.registry)/bench/cold:v1"
    $target = Join-Path $WorkPath 'disk.qcow2'
    $child = @"
`$sw = [Diagnostics.Stopwatch]::StartNew()
Import-Module '$ModulePath'
`$import = `$sw.Elapsed.TotalSeconds
`$null = Resolve-OrasImage '$reference'
`$resolve = `$sw.Elapsed.TotalSeconds
`$null = Install-DiskImageFromOras '$reference' -Path '$target' -Force
`$first = `$sw.Elapsed.TotalSeconds
`$null = Install-DiskImageFromOras '$reference' -Path '$target' -Force
`$second = `$sw.Elapsed.TotalSeconds
"`$import `$resolve `$first `$second"
"@
    $rows = foreach ($rep in 1..$Repetitions) {
        Sync-BenchDisk
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $r = Invoke-ChildPwsh -Command $child -TimeoutSeconds 600
        $wall = $clock.Elapsed.TotalSeconds
        if ($r.ExitCode -ne 0) { throw "The child failed: $($r.Err)" }
        $t = @(($r.Out.Trim() -split '\s+')[-4..-1] | ForEach-Object { [double]$_ })
        $inside = $t[3]
        [pscustomobject]@{
            ProcessStart = $wall - $inside
            Import       = $t[0]
            FirstResolve = $t[1] - $t[0]
            FirstInstall = $t[2] - $t[1]
            WarmInstall  = $t[3] - $t[2]
        }
    }
}
finally {
    Stop-TestRegistry $registry
}


$steps = 'ProcessStart', 'Import', 'FirstResolve', 'FirstInstall', 'WarmInstall'
$medians = @{}
foreach ($s in $steps) { $medians[$s] = Get-Median @($rows | ForEach-Object $s) }
# The cold total is what a new pwsh pays to stage once; the warm install is the same work without first-time costs.
$cold = $medians.ProcessStart + $medians.Import + $medians.FirstResolve + $medians.FirstInstall
$extra = $cold - $medians.WarmInstall
$steps | ForEach-Object {
    [pscustomobject]@{ Step = $_; MedianSeconds = [math]::Round($medians[$_], 3); ShareOfCold = if ($_ -eq 'WarmInstall') { '' } else { '{0:P0}' -f ($medians[$_] / $cold) } }
} | Format-Table -AutoSize | Out-Host
Write-Host ("cold minus warm: {0:N2} s; of it process start {1:P0}, import {2:P0}, first resolve (HTTP setup, JIT) {3:P0}, first install beyond a warm one (JIT) {4:P0}" -f
    $extra, ($medians.ProcessStart / $extra), ($medians.Import / $extra), ($medians.FirstResolve / $extra), (($medians.FirstInstall - $medians.WarmInstall) / $extra))
