#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Bench row for issue 13: time to flash an artifact onto a loop device, ours against curl | gunzip | dd.
.DESCRIPTION
    Creates a loop device over a new sparse file of the image size plus 64 MiB (Linux, root), then alternates,
    Repetitions times:
      F ours     a new pwsh: Install-DiskImageFromOras <reference> -Path <loop device> -Force (one pass, O_DIRECT
                 writes, zero runs with BLKZEROOUT, one fsync at the end);
      F dd       the oras-style pipe: curl -fsS <blob> | gzip -dc | dd of=<loop device> bs=4M oflag=direct conv=fsync.
    Returns one row per run (Mode, Compression, Seconds, PeakRssMB, ExtraDiskMB) and prints the median ratio.
    The loop device is always detached and its file removed. Called from tools/Invoke-Benchmark.ps1; returns
    nothing (with a warning) when loop devices cannot be made.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Reference,
    [Parameter(Mandatory)] [string] $BlobUrl,
    [Parameter(Mandatory)] [long] $ImageSize,
    [Parameter(Mandatory)] [string] $WorkPath,
    [ValidateRange(1, 100)] [int] $Repetitions = 1
)

$ErrorActionPreference = 'Stop'
if (-not $IsLinux -or (& id -u) -ne '0' -or -not (Get-Command losetup -ErrorAction Ignore)) {
    Write-Warning 'Flash bench skipped: it needs Linux, root and losetup.'
    return
}

Import-Module (Join-Path $PSScriptRoot 'BenchKit.psm1') -Force
$childPwsh = Get-ChildPwsh
$pwsh = $childPwsh.Path
$prefix = $childPwsh.Prefix

function Measure-Run([string] $Mode, [string] $FilePath, [string[]] $Arguments) {
    $run = Invoke-TimedProcess -Label $Mode -FilePath $FilePath -Arguments $Arguments -WorkPath $WorkPath
    [pscustomobject]@{ Mode = $Mode; Compression = 'gzip'; Seconds = $run.Seconds; PeakRssMB = $run.PeakRssMB; ExtraDiskMB = 0; CpuSeconds = $run.CpuSeconds }
}

$backing = Join-Path $WorkPath ('flash-' + [guid]::NewGuid().ToString('n').Substring(0, 8) + '.img')
$file = [IO.File]::Create($backing)
try { $file.SetLength($ImageSize + 64MB) } finally { $file.Dispose() }
$device = (& losetup -f --show $backing 2>&1)
if ($LASTEXITCODE -ne 0) {
    Remove-Item -LiteralPath $backing -ErrorAction Ignore
    Write-Warning "Flash bench skipped: losetup failed: $device"
    return
}
$device = "$device".Trim()
$rows = [Collections.Generic.List[object]]::new()
try {
    $ours = "Import-Module '$ModulePath'; `$null = Install-DiskImageFromOras '$Reference' -Path '$device' -Force"
    $dd = "set -o pipefail; curl -fsS '$BlobUrl' | gzip -dc | dd of='$device' bs=4M oflag=direct conv=fsync status=none"
    for ($rep = 1; $rep -le $Repetitions; $rep++) {
        $rows.Add((Measure-Run 'F flash ours' $pwsh ($prefix + @('-NoProfile', '-NonInteractive', '-Command', $ours))))
        $rows.Add((Measure-Run 'F flash curl|gunzip|dd' 'bash' @('-c', $dd)))
    }
}
finally {
    & losetup -d $device
    Remove-Item -LiteralPath $backing -ErrorAction Ignore
}

$o = Get-Median ($rows | Where-Object Mode -eq 'F flash ours' | ForEach-Object Seconds)
$d = Get-Median ($rows | Where-Object Mode -eq 'F flash curl|gunzip|dd' | ForEach-Object Seconds)
Write-Host ("flash onto {0}: ours {1:N2} s, curl|gunzip|dd {2:N2} s, ours/dd {3:N2}" -f $device, $o, $d, ($o / $d))
$rows
