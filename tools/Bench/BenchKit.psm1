<#
.SYNOPSIS
    What the bench scripts share (tools/Invoke-Benchmark.ps1 and tools/Bench/*.ps1): their work folders, how a
    child pwsh is started, allocated bytes, the disk poller, the timed run of a process under GNU time, medians.
#>

Set-StrictMode -Version Latest

function New-BenchFolders {
    # The work folder (created, resolved) with its source/ (inputs kept between runs) and run/ (emptied per run).
    param([Parameter(Mandatory)] [string] $WorkPath)
    $null = New-Item -ItemType Directory -Force $WorkPath
    $full = (Resolve-Path $WorkPath).Path
    $folders = [pscustomobject]@{ WorkPath = $full; SourcePath = (Join-Path $full 'source'); RunPath = (Join-Path $full 'run') }
    $null = New-Item -ItemType Directory -Force $folders.SourcePath, $folders.RunPath
    $folders
}

function Get-ChildPwsh {
    # A child pwsh started the way this one was (under `dotnet pwsh` the process is dotnet and pwsh.dll comes first).
    $path = [Environment]::ProcessPath
    $prefix = @()
    if ((Split-Path $path -Leaf) -like 'dotnet*') { $prefix = @([Environment]::GetCommandLineArgs()[0]) }
    [pscustomobject]@{ Path = $path; Prefix = $prefix }
}

function Get-AllocatedBytes([string] $Path) {
    if (-not $Path -or -not (Test-Path $Path)) { return 0 }
    [long]((& du -sB1 $Path 2>$null) -split '\s+')[0]
}

function Clear-BenchFolder([Parameter(Mandatory)] [string] $Path) {
    Get-ChildItem $Path -Force | Remove-Item -Recurse -Force
}

function Start-DiskPoller {
    # A separate process, so polling works the same whether the measured work runs in a child or in-session.
    param([Parameter(Mandatory)] [string] $Folder, [Parameter(Mandatory)] [string] $LogPath)
    Remove-Item $LogPath -ErrorAction Ignore
    $psi = [Diagnostics.ProcessStartInfo]::new('bash')
    $psi.ArgumentList.Add('-c')
    $psi.ArgumentList.Add("while :; do du -sB1 '$Folder' 2>/dev/null | cut -f1 >> '$LogPath'; sleep 0.1; done")
    [pscustomobject]@{ Process = [Diagnostics.Process]::Start($psi); Log = $LogPath }
}

function Stop-DiskPoller($Poller) {
    # The peak bytes the folder held while polled.
    $Poller.Process.Kill()
    $null = $Poller.Process.WaitForExit(5000)
    $values = @(Get-Content $Poller.Log -ErrorAction Ignore | Where-Object { $_ -match '^\d+$' } | ForEach-Object { [long]$_ })
    if ($values.Count -eq 0) { return 0 }
    ($values | Measure-Object -Maximum).Maximum
}

function Sync-BenchDisk {
    # Before each timed run: write out what earlier runs left dirty (qemu-img, gzip and dd never fsync), so no run
    # pays for another's write-back through its own fsync or a busy disk.
    if (-not $IsWindows) { & sync }
}

function Invoke-TimedProcess {
    <#
        Runs a process under GNU time and returns its wall seconds, peak RSS (MB, of its process tree), user and
        system CPU seconds and, with -PollFolder, the peak bytes that folder held. Throws (naming -Label) when
        it fails or outlives -TimeoutSeconds.
    #>
    param(
        [Parameter(Mandatory)] [string] $Label,
        [Parameter(Mandatory)] [string] $FilePath,
        [string[]] $Arguments = @(),
        [Parameter(Mandatory)] [string] $WorkPath,
        [string] $PollFolder,
        [int] $TimeoutSeconds = 900
    )
    $timeLog = Join-Path $WorkPath 'time.log'
    Remove-Item $timeLog -ErrorAction Ignore
    $psi = [Diagnostics.ProcessStartInfo]::new('/usr/bin/time')
    foreach ($a in @('-f', '%e %M %U %S', '-o', $timeLog, $FilePath) + $Arguments) { $psi.ArgumentList.Add($a) }
    $psi.RedirectStandardOutput = $true
    $psi.RedirectStandardError = $true
    Sync-BenchDisk
    $poller = if ($PollFolder) { Start-DiskPoller -Folder $PollFolder -LogPath (Join-Path $WorkPath 'disk.log') } else { $null }
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $process = [Diagnostics.Process]::Start($psi)
    $stdout = $process.StandardOutput.ReadToEndAsync()
    $stderr = $process.StandardError.ReadToEndAsync()
    if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
        $process.Kill($true)
        if ($poller) { $null = Stop-DiskPoller $poller }
        throw "$Label did not finish in $TimeoutSeconds s."
    }
    $process.WaitForExit()
    $seconds = $clock.Elapsed.TotalSeconds
    $peakDisk = if ($poller) { Stop-DiskPoller $poller } else { 0 }
    if ($process.ExitCode -ne 0) { throw "$Label failed with exit code $($process.ExitCode): $($stderr.Result) $($stdout.Result)" }
    # GNU time may print a status line first; the figures are on the last line.
    $fields = (Get-Content $timeLog | Select-Object -Last 1) -split ' '
    [pscustomobject]@{
        Seconds   = [math]::Round($seconds, 2)
        PeakRssMB = [math]::Round([double]$fields[1] / 1024, 1)
        CpuSeconds = [math]::Round([double]$fields[2] + [double]$fields[3], 2)
        PeakDisk  = $peakDisk
        StdOut    = $stdout.Result
    }
}

function Get-Median([double[]] $Values) {
    $sorted = @($Values | Sort-Object)
    $n = $sorted.Count
    if ($n -eq 0) { return 0 }
    if ($n % 2) { $sorted[[int][math]::Floor($n / 2)] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
}

Export-ModuleMember -Function New-BenchFolders, Sync-BenchDisk, Get-ChildPwsh, Get-AllocatedBytes, Clear-BenchFolder, Start-DiskPoller,
    Stop-DiskPoller, Invoke-TimedProcess, Get-Median
