#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Stages a realistic 2 GiB disk image side by side with the seed pipeline and with a floor, and prints ratios.

.DESCRIPTION
    Called by `build.ps1 -Task Bench` after the build. It generates a realistic raw image (about 32 % of its
    clusters hold data), compresses it with gzip and zstd, publishes both to a loopback registry started with the
    test kit, and then alternates, for each compression, Repetitions times:

      A        the seed pipeline, re-stated with public tools: curl with retries to a file, a sparse decompress
               (gzip -dc | dd conv=sparse), qemu-img convert -O qcow2, qemu-img resize +8G;
      B cold   Install-DiskImageFromOras -GrowBy 8GB in a new pwsh;
      B warm   the same in this session (module already loaded);
      C        the floor for any .NET implementation: a new pwsh that GETs the blob and inflates it into nothing.

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
$null = New-Item -ItemType Directory -Force $WorkPath
$WorkPath = (Resolve-Path $WorkPath).Path
$SourcePath = Join-Path $WorkPath 'source'
$RunPath = Join-Path $WorkPath 'run'
$null = New-Item -ItemType Directory -Force $SourcePath, $RunPath

# A child pwsh started the way this one was (under `dotnet pwsh` the process is dotnet and pwsh.dll comes first).
$PwshPath = [Environment]::ProcessPath
$PwshPrefix = @()
if ((Split-Path $PwshPath -Leaf) -like 'dotnet*') { $PwshPrefix = @([Environment]::GetCommandLineArgs()[0]) }

function Get-AllocatedBytes([string] $Path) {
    if (-not (Test-Path $Path)) { return 0 }
    [long]((& du -sB1 $Path 2>$null) -split '\s+')[0]
}

function Start-DiskPoller([string] $Folder) {
    # A separate process, so polling works the same whether the measured work runs in a child or in-session.
    $log = Join-Path $WorkPath 'disk.log'
    Remove-Item $log -ErrorAction Ignore
    $psi = [Diagnostics.ProcessStartInfo]::new('bash')
    $psi.ArgumentList.Add('-c')
    $psi.ArgumentList.Add("while :; do du -sB1 '$Folder' 2>/dev/null | cut -f1 >> '$log'; sleep 0.1; done")
    [pscustomobject]@{ Process = [Diagnostics.Process]::Start($psi); Log = $log }
}

function Stop-DiskPoller($Poller) {
    $Poller.Process.Kill()
    $null = $Poller.Process.WaitForExit(5000)
    $values = @(Get-Content $Poller.Log -ErrorAction Ignore | Where-Object { $_ -match '^\d+$' } | ForEach-Object { [long]$_ })
    if ($values.Count -eq 0) { return 0 }
    ($values | Measure-Object -Maximum).Maximum
}

function Clear-RunFolder {
    Get-ChildItem $RunPath -Force | Remove-Item -Recurse -Force
}

function Invoke-Measured {
    # Runs a process under GNU time; returns wall seconds, peak RSS of its process tree and peak extra disk.
    param([string] $Mode, [string] $Kind, [string] $FilePath, [string[]] $Arguments, [string] $FinalImage)
    Clear-RunFolder
    $timeLog = Join-Path $WorkPath 'time.log'
    $psi = [Diagnostics.ProcessStartInfo]::new('/usr/bin/time')
    foreach ($a in @('-f', '%e %M', '-o', $timeLog, $FilePath) + $Arguments) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    $poller = Start-DiskPoller $RunPath
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $process = [Diagnostics.Process]::Start($psi)
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    if (-not $process.WaitForExit(900000)) { $process.Kill($true); throw "$Mode ($Kind) did not finish in 15 minutes." }
    $process.WaitForExit()
    $seconds = $clock.Elapsed.TotalSeconds
    $peakDisk = Stop-DiskPoller $poller
    if ($process.ExitCode -ne 0) {
        throw "$Mode ($Kind) failed with exit code $($process.ExitCode): $($stderr.Result) $($stdout.Result)"
    }
    $fields = (Get-Content $timeLog | Select-Object -Last 1) -split ' '
    $final = if ($FinalImage) { Get-AllocatedBytes $FinalImage } else { 0 }
    [pscustomobject]@{
        Mode        = $Mode
        Compression = $Kind
        Seconds     = [math]::Round($seconds, 2)
        PeakRssMB   = [math]::Round([double]$fields[1] / 1024, 1)
        ExtraDiskMB = [math]::Round([math]::Max(0, $peakDisk - $final) / 1MB, 1)
    }
}

function Invoke-MeasuredInSession {
    # The warm run: this session, module loaded. Peak RSS from VmHWM after resetting it (clear_refs 5).
    param([string] $Mode, [string] $Kind, [scriptblock] $Action, [string] $FinalImage)
    Clear-RunFolder
    [GC]::Collect()
    Set-Content /proc/self/clear_refs '5' -ErrorAction Ignore
    $poller = Start-DiskPoller $RunPath
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $null = & $Action
    $seconds = $clock.Elapsed.TotalSeconds
    $peakDisk = Stop-DiskPoller $poller
    $hwm = (Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }) -replace '\D', ''
    [pscustomobject]@{
        Mode        = $Mode
        Compression = $Kind
        Seconds     = [math]::Round($seconds, 2)
        PeakRssMB   = [math]::Round([double]$hwm / 1024, 1)
        ExtraDiskMB = [math]::Round([math]::Max(0, $peakDisk - (Get-AllocatedBytes $FinalImage)) / 1MB, 1)
    }
}

function Get-Median([double[]] $Values) {
    $sorted = $Values | Sort-Object
    $n = $sorted.Count
    if ($n % 2) { $sorted[[int][math]::Floor($n / 2)] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
}

#region The source image, compressed

$raw = Join-Path $SourcePath "realistic-$ImageSize-$DataFraction.img"
if (-not (Test-Path $raw)) {
    Write-Host "Generating a $([math]::Round($ImageSize / 1GB, 2)) GiB realistic image ($([int]($DataFraction * 100)) % data clusters) ..."
    & dotnet $TestKitPath generate-image --out $raw --size $ImageSize --seed 7 --shape realistic --data-fraction $DataFraction | Out-Null
    if ($LASTEXITCODE -ne 0) { throw 'generate-image failed.' }
}
$blobs = @{}
foreach ($kind in $Compression) {
    $ext = if ($kind -eq 'gzip') { 'gz' } else { 'zst' }
    $file = "$raw.$ext"
    if (-not (Test-Path $file)) {
        Write-Host "Compressing with $kind ..."
        if ($kind -eq 'gzip') { & bash -c "gzip -6 -c '$raw' > '$file.tmp' && mv '$file.tmp' '$file'" }
        else { & bash -c "zstd -q -3 -T0 -c '$raw' > '$file.tmp' && mv '$file.tmp' '$file'" }
        if ($LASTEXITCODE -ne 0) { throw "$kind failed." }
    }
    $blobs[$kind] = $file
}
Write-Host ("Source: {0:N0} MiB raw, {1:N0} MiB allocated; {2}" -f ($ImageSize / 1MB), ((Get-AllocatedBytes $raw) / 1MB),
    (($blobs.GetEnumerator() | Sort-Object Key | ForEach-Object { '{0} {1:N0} MiB' -f $_.Key, ((Get-Item $_.Value).Length / 1MB) }) -join ', '))

#endregion

#region Registry

Import-Module (Join-Path $PSScriptRoot '../tests/TestKit.psm1') -Force
$registry = Start-TestRegistry -Auth anonymous -TestKitPath $TestKitPath
$results = [Collections.Generic.List[object]]::new()
try {
    $published = @{}
    foreach ($kind in $Compression) {
        $image = Publish-TestImage -Registry $registry -Repository 'bench/realistic' -Tag $kind -Path $blobs[$kind]
        $published[$kind] = [pscustomobject]@{
            Reference = "oras://$($registry.Authority)/bench/realistic@$($image.Digest)"
            BlobUrl   = "http://$($registry.Authority)/v2/bench/realistic/blobs/$($image.Digest)"
        }
    }

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
            $results.Add((Invoke-Measured -Mode 'A seed' -Kind $kind -FilePath 'bash' -Arguments @('-c', $seed) -FinalImage $target))

            $cold = "Import-Module '$ModulePath'; `$null = Install-DiskImageFromOras '$($p.Reference)' -Path '$target' -GrowBy 8GB -Force -ErrorAction Stop"
            $results.Add((Invoke-Measured -Mode 'B cold' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-Command', $cold)) -FinalImage $target))

            $reference = $p.Reference
            $results.Add((Invoke-MeasuredInSession -Mode 'B warm' -Kind $kind -FinalImage $target -Action {
                        Install-DiskImageFromOras $reference -Path $target -GrowBy 8GB -Force -ErrorAction Stop
                    }))

            $results.Add((Invoke-Measured -Mode 'C floor' -Kind $kind -FilePath $PwshPath -Arguments ($PwshPrefix + @('-NoProfile', '-NonInteractive', '-File', $floorPath, $p.BlobUrl, $kind, $moduleBase))))
            $last = $results | Select-Object -Last 4
            Write-Host ("rep {0} {1}: " -f $rep, $kind) + (($last | ForEach-Object { '{0} {1:N2}s' -f $_.Mode, $_.Seconds }) -join ', ')
        }
    }
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
    if (-not $SkipDecodeComparison) {
        $ds = Get-SummarySeconds 'D seed decode+convert' $kind
        $dn = Get-SummarySeconds 'D native writer' $kind
        $df = Get-SummarySeconds 'D floor' $kind
        Write-Host ("{0}: decode-and-write native/seed {1:N2} (target <= 0.3), native/floor {2:N2} (target <= 1.5)" -f $kind, ($dn / $ds), ($dn / $df))
    }
}

#endregion
