#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Stages a realistic 2 GiB disk image side by side with the seed pipeline and with a floor, and prints ratios.

.DESCRIPTION
    Called by `build.ps1 -Task Bench` after the build. It generates a realistic raw image (about 32 % of its
    clusters hold data), compresses it with gzip and zstd, publishes both to a loopback registry started with the
    test kit, and then alternates, for each compression, Repetitions times:

      A        the seed pipeline, re-stated with public tools: curl with retries to a file, a sparse decompress
               (gzip -dc | dd conv=sparse), qemu-img convert -O qcow2, qemu-img resize +8G; 'A seed, then sync'
               adds a sync after it, so it is as durable as ours (measured: the sync adds about 0.01 s, little
               of the seed's image is still dirty when it ends);
      B cold   Install-DiskImageFromOras -GrowBy 8GB in a new pwsh;
      B warm   the same in this session (module already loaded);
      C        the floor for any .NET implementation: a new pwsh that GETs the blob and inflates it into nothing.
      C native the native floor: curl | igzip -dc (or zstd -dc) > /dev/null.

    Then issue 4's decode-and-write comparison on local files: the native writer (file -> qcow2) against the
    seed's sparse decompress + qemu-img convert, and against the runtime decoder into nothing.

    It prints the median wall time of each, B/A and B/C, the peak RSS (GNU time's maximum resident set of the
    process tree; VmHWM for the in-session run) and the peak disk used beyond the final image (the work folder
    is polled every 100 ms).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $TestKitPath,
    [ValidateRange(1, 100)] [int] $Repetitions = 3,
    [long] $ImageSize = 2GB,
    [double] $DataFraction = 0.32,
    [ValidateSet('gzip', 'zstd')] [string[]] $Compression = @('gzip', 'zstd'),
    [string] $WorkPath = (Join-Path ([IO.Path]::GetTempPath()) 'orasstaging-bench'),
    [switch] $SkipDecodeComparison
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

foreach ($tool in 'curl', 'gzip', 'zstd', 'dd', 'du', 'qemu-img', '/usr/bin/time') {
    if (-not (Get-Command $tool -ErrorAction Ignore)) { throw "The benchmark needs '$tool'." }
}

$ModulePath = (Resolve-Path $ModulePath).Path
$TestKitPath = (Resolve-Path $TestKitPath).Path
Import-Module (Join-Path $PSScriptRoot 'Bench/BenchKit.psm1') -Force
$folders = New-BenchFolders -WorkPath $WorkPath
$WorkPath = $folders.WorkPath
$SourcePath = $folders.SourcePath
$RunPath = $folders.RunPath
$childPwsh = Get-ChildPwsh
$PwshPath = $childPwsh.Path
$PwshPrefix = $childPwsh.Prefix

function Clear-RunFolder { Clear-BenchFolder $RunPath }

function Invoke-Measured {
    # Runs a process under GNU time; returns wall seconds, peak RSS of its process tree and peak extra disk.
    param([string] $Mode, [string] $Kind, [string] $FilePath, [string[]] $Arguments, [string] $FinalImage)
    Clear-RunFolder
    $run = Invoke-TimedProcess -Label "$Mode ($Kind)" -FilePath $FilePath -Arguments $Arguments -WorkPath $WorkPath -PollFolder $RunPath
    [pscustomobject]@{
        Mode        = $Mode
        Compression = $Kind
        Seconds     = $run.Seconds
        PeakRssMB   = $run.PeakRssMB
        ExtraDiskMB = [math]::Round([math]::Max(0, $run.PeakDisk - (Get-AllocatedBytes $FinalImage)) / 1MB, 1)
        CpuSeconds  = $run.CpuSeconds
    }
}

function Invoke-MeasuredInSession {
    # The warm run: this session, module loaded. Peak RSS from VmHWM after resetting it (clear_refs 5).
    param([string] $Mode, [string] $Kind, [scriptblock] $Action, [string] $FinalImage)
    Clear-RunFolder
    [GC]::Collect()
    Set-Content /proc/self/clear_refs '5' -ErrorAction Ignore
    $proc = [Diagnostics.Process]::GetCurrentProcess()
    Sync-BenchDisk
    $cpu = $proc.TotalProcessorTime
    $poller = Start-DiskPoller -Folder $RunPath -LogPath (Join-Path $WorkPath 'disk.log')
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $null = & $Action
    $seconds = $clock.Elapsed.TotalSeconds
    $peakDisk = Stop-DiskPoller $poller
    $hwm = (Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }) -replace '\D', ''
    $proc.Refresh()
    [pscustomobject]@{
        Mode        = $Mode
        Compression = $Kind
        Seconds     = [math]::Round($seconds, 2)
        PeakRssMB   = [math]::Round([double]$hwm / 1024, 1)
        ExtraDiskMB = [math]::Round([math]::Max(0, $peakDisk - (Get-AllocatedBytes $FinalImage)) / 1MB, 1)
        CpuSeconds  = [math]::Round(($proc.TotalProcessorTime - $cpu).TotalSeconds, 2)
    }
}

#region The source image, published compressed

$env:ORASSTAGING_TESTKIT = $TestKitPath
Import-Module (Join-Path $PSScriptRoot '../tests/TestKit.psm1') -Force
$raw = Join-Path $SourcePath "realistic-$ImageSize-$DataFraction.img"
if (-not (Test-Path $raw)) {
    Write-Host "Generating a $([math]::Round($ImageSize / 1GB, 2)) GiB realistic image ($([int]($DataFraction * 100)) % data clusters) ..."
    $null = New-TestDiskImage -Path $raw -Size $ImageSize -Seed 7 -Shape Realistic -DataFraction $DataFraction -TimeoutSeconds 1200
}

$registry = Start-TestRegistry -Auth anonymous
$results = [Collections.Generic.List[object]]::new()
$blobs = @{}
try {
    $published = @{}
    foreach ($kind in $Compression) {
        Write-Host "Publishing the image $kind-compressed ..."
        $image = Publish-TestImage -Registry $registry -Repository 'bench/realistic' -Tag $kind -ImagePath $raw -Compression $kind -TimeoutSeconds 1800
        # Straight to the registry, not through the fault proxy: nothing but the work itself is measured.
        $published[$kind] = [pscustomobject]@{
            Reference = "oras://$($registry.registry)/bench/realistic@$($image.digest)"
            BlobUrl   = "$($registry.registryUrl)/v2/bench/realistic/blobs/$($image.digest)"
            Size      = $image.size
        }
        # The same bytes as a local file, for the decode-and-write comparison.
        $blobs[$kind] = Join-Path $SourcePath "realistic.$kind"
        & curl -fsS -o $blobs[$kind] $published[$kind].BlobUrl
        if ($LASTEXITCODE -ne 0) { throw "curl could not fetch the $kind blob." }
    }
    Write-Host ("Source: {0:N0} MiB raw, {1:N0} MiB allocated; {2}" -f ($ImageSize / 1MB), ((Get-AllocatedBytes $raw) / 1MB),
        (($published.GetEnumerator() | Sort-Object Key | ForEach-Object { '{0} {1:N0} MiB' -f $_.Key, ($_.Value.Size / 1MB) }) -join ', '))

    Import-Module $ModulePath -Force
    $target = Join-Path $RunPath 'disk.qcow2'
    $floorScript = @'
param($Url, $Kind, $ModuleBase)
$client = [Net.Http.HttpClient]::new()
$response = $client.GetAsync($Url, [Net.Http.HttpCompletionOption]::ResponseHeadersRead).GetAwaiter().GetResult()
$null = $response.EnsureSuccessStatusCode()
$stream = $response.Content.ReadAsStream()
if ($Kind -eq 'gzip') { $decoder = [IO.Compression.GZipStream]::new($stream, [IO.Compression.CompressionMode]::Decompress) }
else { Add-Type -Path (Join-Path $ModuleBase 'ZstdSharp.dll'); $decoder = [ZstdSharp.DecompressionStream]::new($stream) }
$decoder.CopyTo([IO.Stream]::Null, 1MB)
'@
    $floorPath = Join-Path $WorkPath 'floor.ps1'
    Set-Content $floorPath $floorScript
    $moduleBase = Split-Path $ModulePath

    # One untimed warm-up of the in-session path, so "warm" means warm.
    $null = Install-DiskImageFromOras $published[$Compression[0]].Reference -Path $target -GrowBy 8GB -Force
    Clear-RunFolder

    for ($rep = 1; $rep -le $Repetitions; $rep++) {
        foreach ($kind in $Compression) {
            $p = $published[$kind]
            $decompress = if ($kind -eq 'gzip') { 'gzip -dc' } else { 'zstd -dc -q' }
            $seed = "curl -fsSL --retry 5 --retry-all-errors -C - -o '$RunPath/image.blob' '$($p.BlobUrl)' && " +
                "$decompress '$RunPath/image.blob' | dd of='$RunPath/image.raw' bs=1M conv=sparse status=none && rm '$RunPath/image.blob' && " +
                "qemu-img convert -f raw -O qcow2 '$RunPath/image.raw' '$target' && rm '$RunPath/image.raw' && " +
                "qemu-img resize -q '$target' +8G"
            $seedRun = Invoke-Measured -Mode 'A seed' -Kind $kind -FilePath 'bash' -Arguments @('-c', $seed) -FinalImage $target
            $results.Add($seedRun)
            # Ours fsyncs before it commits; the seed made as durable is its time plus a sync of what it left dirty.
            $flush = [Diagnostics.Stopwatch]::StartNew()
            Sync-BenchDisk
            $results.Add([pscustomobject]@{ Mode = 'A seed, then sync'; Compression = $kind; Seconds = [math]::Round($seedRun.Seconds + $flush.Elapsed.TotalSeconds, 2); PeakRssMB = $seedRun.PeakRssMB; ExtraDiskMB = $seedRun.ExtraDiskMB })

            # The child also notes how long Import-Module plus the install took, to tell process start from work.
            $inner = Join-Path $WorkPath 'inner.txt'
            $cold = "`$clock = [Diagnostics.Stopwatch]::StartNew(); Import-Module '$ModulePath'; `$null = Install-DiskImageFromOras '$($p.Reference)' -Path '$target' -GrowBy 8GB -Force -ErrorAction Stop; Set-Content '$inner' `$clock.Elapsed.TotalSeconds.ToString([cultureinfo]::InvariantCulture)"
            $coldResult = Invoke-Measured -Mode 'B cold' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-Command', $cold)) -FinalImage $target
            $results.Add($coldResult)
            $results.Add([pscustomobject]@{ Mode = 'B cold, import+install only'; Compression = $kind; Seconds = [math]::Round([double](Get-Content $inner), 2); PeakRssMB = $coldResult.PeakRssMB; ExtraDiskMB = $coldResult.ExtraDiskMB })

            $reference = $p.Reference
            $results.Add((Invoke-MeasuredInSession -Mode 'B warm' -Kind $kind -FinalImage $target -Action {
                        Install-DiskImageFromOras $reference -Path $target -GrowBy 8GB -Force -ErrorAction Stop
                    }))

            $results.Add((Invoke-Measured -Mode 'C floor' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-File', $floorPath, $p.BlobUrl, $kind, $moduleBase))))
            # The native floor (issue 12): the same GET into the fastest native decoder, output thrown away.
            $nativeDecoder = if ($kind -eq 'zstd') { 'zstd -dc -q' } elseif (Get-Command igzip -ErrorAction Ignore) { 'igzip -dc' } else { $null }
            if ($nativeDecoder) {
                $results.Add((Invoke-Measured -Mode 'C native floor' -Kind $kind -FilePath 'bash' -Arguments @('-c', "set -o pipefail; curl -fsS '$($p.BlobUrl)' | $nativeDecoder > /dev/null")))
            }
            $last = $results | Select-Object -Last ($nativeDecoder ? 7 : 6)
            Write-Host (("rep {0} {1}: " -f $rep, $kind) + (($last | ForEach-Object { '{0} {1:N2}s' -f $_.Mode, $_.Seconds }) -join ', '))
        }
    }

    # Where B's time goes, in this session (no process start): the registry stream alone (receive + SHA-256),
    # the native decode-and-write alone from the local blob, and the runtime decoder alone into nothing.
    $none = [Threading.CancellationToken]::None
    for ($rep = 1; $rep -le $Repetitions; $rep++) {
        foreach ($kind in $Compression) {
            $reference = $published[$kind].Reference
            $results.Add((Invoke-MeasuredInSession -Mode 'E fetch+verify only' -Kind $kind -FinalImage $target -Action {
                        $client = [OrasStaging.Oci.RegistryClient]::new([OrasStaging.Oci.RegistryOptions]::new(), [OrasStaging.NullOperationSink]::Instance)
                        try {
                            $image = $client.ResolveAsync([OrasStaging.Oci.ImageReference]::Parse($reference), [OrasStaging.Oci.ResolveOptions]::new(), $none).GetAwaiter().GetResult()
                            $stream = $client.OpenBlobAsync($image, $none).GetAwaiter().GetResult()
                            $stream.CopyTo([IO.Stream]::Null, 1MB)
                            $stream.Dispose()
                        }
                        finally { if ($client -is [IDisposable]) { $client.Dispose() } }
                    }))
            $blobFile = $blobs[$kind]
            $results.Add((Invoke-MeasuredInSession -Mode 'E decode+write only' -Kind $kind -FinalImage $target -Action {
                        $source = [IO.File]::OpenRead($blobFile)
                        try {
                            $options = [OrasStaging.DiskImages.DiskWriteOptions]::new()
                            $options.Format = 'Qcow2'
                            $options.GrowBy = 8GB
                            $options.InputLength = $source.Length
                            $null = [OrasStaging.DiskImages.DiskImageWriter]::WriteAsync($source, $target, $options, [OrasStaging.NullOperationSink]::Instance, $none).GetAwaiter().GetResult()
                        }
                        finally { $source.Dispose() }
                    }))
            $results.Add((Invoke-MeasuredInSession -Mode 'E inflate only' -Kind $kind -FinalImage $target -Action {
                        $source = [IO.File]::OpenRead($blobFile)
                        try {
                            $decoder = if ($kind -eq 'gzip') { [IO.Compression.GZipStream]::new($source, [IO.Compression.CompressionMode]::Decompress) }
                            else { [ZstdSharp.DecompressionStream]::new($source) }
                            $decoder.CopyTo([IO.Stream]::Null, 1MB)
                            $decoder.Dispose()
                        }
                        finally { $source.Dispose() }
                    }))
        }
    }
    # Issue 13: flashing onto a loop device against curl | gunzip | dd (tools/Bench/Flash.ps1; skips itself without root).
    if ('gzip' -in $Compression -and (Test-Path "$PSScriptRoot/Bench/Flash.ps1")) { foreach ($row in & "$PSScriptRoot/Bench/Flash.ps1" -ModulePath $ModulePath -Reference $published.gzip.Reference -BlobUrl $published.gzip.BlobUrl -ImageSize $ImageSize -WorkPath $WorkPath -Repetitions $Repetitions) { $results.Add($row) } }
}
finally {
    Stop-TestRegistry $registry
}

#endregion

#region Decode-and-write from local files (issue 4)

if (-not $SkipDecodeComparison) {
    $writerScript = @'
param($ModulePath, $Source, $Target)
Import-Module $ModulePath
$sourceStream = [IO.File]::OpenRead($Source)
$options = [OrasStaging.DiskImages.DiskWriteOptions]::new()
$options.Format = 'Qcow2'
$options.InputLength = $sourceStream.Length
$null = [OrasStaging.DiskImages.DiskImageWriter]::WriteAsync($sourceStream, $Target, $options, [OrasStaging.NullOperationSink]::Instance, [Threading.CancellationToken]::None).GetAwaiter().GetResult()
'@
    $writerPath = Join-Path $WorkPath 'writer.ps1'
    Set-Content $writerPath $writerScript
    $localFloor = @'
param($Source, $Kind, $ModuleBase)
$stream = [IO.File]::OpenRead($Source)
if ($Kind -eq 'gzip') { $decoder = [IO.Compression.GZipStream]::new($stream, [IO.Compression.CompressionMode]::Decompress) }
else { Add-Type -Path (Join-Path $ModuleBase 'ZstdSharp.dll'); $decoder = [ZstdSharp.DecompressionStream]::new($stream) }
$decoder.CopyTo([IO.Stream]::Null, 1MB)
'@
    $localFloorPath = Join-Path $WorkPath 'localfloor.ps1'
    Set-Content $localFloorPath $localFloor
    $moduleBase = Split-Path $ModulePath
    $target = Join-Path $RunPath 'disk.qcow2'
    for ($rep = 1; $rep -le $Repetitions; $rep++) {
        foreach ($kind in $Compression) {
            $decompress = if ($kind -eq 'gzip') { 'gzip -dc' } else { 'zstd -dc -q' }
            $seed = "$decompress '$($blobs[$kind])' | dd of='$RunPath/image.raw' bs=1M conv=sparse status=none && " +
                "qemu-img convert -f raw -O qcow2 '$RunPath/image.raw' '$target' && rm '$RunPath/image.raw'"
            $results.Add((Invoke-Measured -Mode 'D seed decode+convert' -Kind $kind -FilePath 'bash' -Arguments @('-c', $seed) -FinalImage $target))
            $results.Add((Invoke-Measured -Mode 'D native writer' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-File', $writerPath, $ModulePath, $blobs[$kind], $target)) -FinalImage $target))
            $results.Add((Invoke-Measured -Mode 'D floor' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-File', $localFloorPath, $blobs[$kind], $kind, $moduleBase))))
        }
    }
}

#endregion

#region Report

Clear-RunFolder
$summary = $results | Group-Object Mode, Compression | ForEach-Object {
    $first = $_.Group[0]
    [pscustomobject]@{
        Mode          = $first.Mode
        Compression   = $first.Compression
        Runs          = $_.Count
        MedianSeconds = [math]::Round((Get-Median ($_.Group.Seconds)), 2)
        # user + system CPU: on a shared machine a less noisy figure than wall time.
        MedianCpu     = [math]::Round((Get-Median @($_.Group | Where-Object { $_.PSObject.Properties['CpuSeconds'] } | ForEach-Object CpuSeconds)), 2)
        PeakRssMB     = ($_.Group.PeakRssMB | Measure-Object -Maximum).Maximum
        ExtraDiskMB   = ($_.Group.ExtraDiskMB | Measure-Object -Maximum).Maximum
    }
}
Write-Host ''
Write-Host "All runs:"
$results | Format-Table -AutoSize | Out-Host
Write-Host "Medians over $Repetitions repetitions:"
$summary | Format-Table -AutoSize | Out-Host

function Get-SummarySeconds($Mode, $Kind) { ($summary | Where-Object { $_.Mode -eq $Mode -and $_.Compression -eq $Kind }).MedianSeconds }
foreach ($kind in $Compression) {
    $a = Get-SummarySeconds 'A seed' $kind
    $bc = Get-SummarySeconds 'B cold' $kind
    $bw = Get-SummarySeconds 'B warm' $kind
    $c = Get-SummarySeconds 'C floor' $kind
    Write-Host ("{0}: B/A cold {1:N2}, warm {2:N2} (target <= 0.3); B/C cold {3:N2}, warm {4:N2} (target <= 1.5)" -f $kind, ($bc / $a), ($bw / $a), ($bc / $c), ($bw / $c))
    $ad = Get-SummarySeconds 'A seed, then sync' $kind
    Write-Host ("{0}: against the seed made as durable as ours (then sync): cold {1:N2}, warm {2:N2}" -f $kind, ($bc / $ad), ($bw / $ad))
    if ($cn = Get-SummarySeconds 'C native floor' $kind) {
        Write-Host ("{0}: B warm / native floor {1:N2} (target <= 1.3)" -f $kind, ($bw / $cn))
    }
    Write-Host ("{0}: where B warm's {1:N2} s go: fetch+verify alone {2:N2} s, decode+write alone {3:N2} s, inflate alone {4:N2} s" -f $kind, $bw,
        (Get-SummarySeconds 'E fetch+verify only' $kind), (Get-SummarySeconds 'E decode+write only' $kind), (Get-SummarySeconds 'E inflate only' $kind))
    if (-not $SkipDecodeComparison) {
        $ds = Get-SummarySeconds 'D seed decode+convert' $kind
        $dn = Get-SummarySeconds 'D native writer' $kind
        $df = Get-SummarySeconds 'D floor' $kind
        Write-Host ("{0}: decode-and-write native/seed {1:N2} (target <= 0.3), native/floor {2:N2} (target <= 1.5)" -f $kind, ($dn / $ds), ($dn / $df))
    }
}

#endregion

if (Test-Path (Join-Path $PSScriptRoot 'Bench/Qcow2.ps1')) { & (Join-Path $PSScriptRoot 'Bench/Qcow2.ps1') -ModulePath $ModulePath -TestKitPath $TestKitPath -Repetitions $Repetitions -ImageSize $ImageSize -DataFraction $DataFraction -WorkPath (Join-Path $WorkPath 'qcow2') } # qcow2 inputs (issue 11)
# The throttled case of issue 12 (one connection capped; a resume after a kill), when the script is there.
if (Test-Path (Join-Path $PSScriptRoot 'Bench/Throttled.ps1')) { & (Join-Path $PSScriptRoot 'Bench/Throttled.ps1') -ModulePath $ModulePath -TestKitPath $TestKitPath -ImagePath $raw -Repetitions $Repetitions }
