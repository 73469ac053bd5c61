#!/usr/bin/env pwsh
<#
.SYNOPSIS
    The throttled case of issue 12: the same blob through the fault proxy, each response body limited to
    -BytesPerSecond (40 MB/s), so one connection is the bound, as it often is to a CDN.
.DESCRIPTION
    Publishes -ImagePath (or a generated realistic image) gzip-compressed to a loopback registry and, through the
    throttled proxy, Repetitions times:
      T seed        curl, one connection, the blob to a file (the transfer alone: a floor for the seed pipeline);
      T ours cold   Install-DiskImageFromOras in a new pwsh (-ConnectionLimit default);
      T ours warm   the same in this session;
      T resumed     a new-pwsh install killed once its kept prefix passed 80 % of the blob, then this run, in this
                    session, timed alone (target <= 0.4 x T ours warm).
    Prints medians and the ratios against the targets. Called from tools/Invoke-Benchmark.ps1; runnable alone.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TestKitPath,
    [string] $ImagePath,
    [long] $ImageSize = 2GB,
    [double] $DataFraction = 0.32,
    [long] $BytesPerSecond = 40MB,
    [ValidateRange(1, 100)] [int] $Repetitions = 3,
    [string] $WorkPath = (Join-Path ([IO.Path]::GetTempPath()) 'orasstaging-bench-throttled')
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$ModulePath = (Resolve-Path $ModulePath).Path
$env:ORASSTAGING_TESTKIT = (Resolve-Path $TestKitPath).Path
Import-Module (Join-Path $PSScriptRoot 'BenchKit.psm1') -Force
$folders = New-BenchFolders -WorkPath $WorkPath
$WorkPath = $folders.WorkPath
$RunPath = $folders.RunPath
Import-Module (Join-Path $PSScriptRoot '../../tests/TestKit.psm1') -Force

if (-not $ImagePath) {
    $ImagePath = Join-Path $WorkPath "realistic-$ImageSize-$DataFraction.img"
    if (-not (Test-Path $ImagePath)) {
        $null = New-TestDiskImage -Path $ImagePath -Size $ImageSize -Seed 7 -Shape Realistic -DataFraction $DataFraction -TimeoutSeconds 1200
    }
}

function Clear-Run { Clear-BenchFolder $RunPath }

function Measure-Seconds([scriptblock] $Action) {
    Sync-BenchDisk
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $null = & $Action
    [math]::Round($clock.Elapsed.TotalSeconds, 2)
}

$registry = Start-TestRegistry -Auth anonymous
try {
    $image = Publish-TestImage -Registry $registry -Repository 'bench/throttled' -Tag 'gzip' -ImagePath $ImagePath -Compression gzip -TimeoutSeconds 1800
    $reference = "oras://$($registry.proxy)/bench/throttled@$($image.digest)"
    $blobUrl = "$($registry.proxyUrl)/v2/bench/throttled/blobs/$($image.digest)"
    $target = Join-Path $RunPath 'disk.qcow2'
    $childCommand = "Import-Module '$ModulePath'; Install-DiskImageFromOras '$reference' -Path '$target' -Force -ErrorAction Stop"
    Write-Host ("Throttled: blob {0:N1} MiB, each response body at {1:N0} MB/s" -f ($image.size / 1MB), ($BytesPerSecond / 1MB))
    Import-Module $ModulePath -Force
    # Every blob body through the proxy is throttled until the end.
    Set-ProxyFault -Registry $registry -Kind Throttle -BytesPerSecond $BytesPerSecond -Times -1 -PathContains $image.digest | Out-Null

    $runs = [Collections.Generic.List[object]]::new()
    for ($rep = 1; $rep -le $Repetitions; $rep++) {
        Clear-Run
        $runs.Add([pscustomobject]@{ Mode = 'T seed (curl, 1 connection)'; Seconds = (Measure-Seconds {
                        & curl -fsS -o (Join-Path $RunPath 'image.blob') $blobUrl
                        if ($LASTEXITCODE -ne 0) { throw 'curl failed.' }
                    }) })
        Clear-Run
        $runs.Add([pscustomobject]@{ Mode = 'T ours cold'; Seconds = (Measure-Seconds {
                        $r = Invoke-ChildPwsh -Command $childCommand -TimeoutSeconds 1800
                        if ($r.ExitCode -ne 0) { throw "The cold install failed: $($r.Err)" }
                    }) })
        Clear-Run
        $runs.Add([pscustomobject]@{ Mode = 'T ours warm'; Seconds = (Measure-Seconds { Install-DiskImageFromOras $reference -Path $target -Force -ErrorAction Stop }) })

        # Killed at 80 % of the blob (the kept prefix's record), then resumed here.
        Clear-Run
        $record = "$target.blob.partial.json"
        $child = Start-ChildPwsh -Command $childCommand
        try {
            $offset = 0
            $deadline = [DateTime]::UtcNow.AddMinutes(30)
            while ($offset -lt 0.8 * $image.size -and -not $child.HasExited -and [DateTime]::UtcNow -lt $deadline) {
                Start-Sleep -Milliseconds 50
                try { $offset = [long](Get-Content -LiteralPath $record -Raw -ErrorAction Stop | ConvertFrom-Json).offset } catch { $offset = 0 }
            }
            if ($child.HasExited) { throw "The install to be killed ended first (exit $($child.ExitCode))." }
        }
        finally {
            if (-not $child.HasExited) { $child.Kill($true) }
            $child.WaitForExit()
        }
        $runs.Add([pscustomobject]@{ Mode = 'T resumed after a kill at 80 %'; Seconds = (Measure-Seconds { Install-DiskImageFromOras $reference -Path $target -ErrorAction Stop }) })
        Write-Host (("rep {0}: " -f $rep) + (($runs | Select-Object -Last 4 | ForEach-Object { '{0} {1:N2}s' -f $_.Mode, $_.Seconds }) -join ', '))
    }
}
finally {
    Stop-TestRegistry $registry
}

$summary = $runs | Group-Object Mode | ForEach-Object {
    [pscustomobject]@{ Mode = $_.Name; Runs = $_.Count; MedianSeconds = [math]::Round((Get-Median $_.Group.Seconds), 2) }
}
$summary | Format-Table -AutoSize | Out-Host
function Get-Seconds($Mode) { ($summary | Where-Object Mode -eq $Mode).MedianSeconds }
$seed = Get-Seconds 'T seed (curl, 1 connection)'
$warm = Get-Seconds 'T ours warm'
Write-Host ("throttled: ours/seed cold {0:N2}, warm {1:N2} (target <= 0.35); resumed after a kill at 80 % / full warm run {2:N2} (target <= 0.4)" -f
    ((Get-Seconds 'T ours cold') / $seed), ($warm / $seed), ((Get-Seconds 'T resumed after a kill at 80 %') / $warm))
