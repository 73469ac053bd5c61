#!/usr/bin/env pwsh
<#
.SYNOPSIS
    Builds, tests, benchmarks, demonstrates and packages the OrasStaging module.

.DESCRIPTION
    Plain PowerShell, no build framework. Run it through the local tool manifest:

        dotnet tool restore
        dotnet pwsh ./build.ps1 -Task Test

    Build    dotnet publish into out/OrasStaging/<version>/ with the manifest, format file and en-US help.
    Test     Build, then xunit (the core) and Pester (the cmdlets); ends with one line "N passed, N failed".
             -PesterPath <files> and -XunitFilter <expr> narrow the run while developing ('none' skips a runner).
    Bench    Stages a realistic 2 GiB image side by side with the seed pipeline and a floor; prints ratios.
    Demo     Starts a loopback registry, publishes a generated nosi-style image and installs it into ./demo/.
    Package  Publishes a .nupkg into out/repo with Publish-PSResource.
    Clean    Removes out/ and every bin/ and obj/.
#>
[CmdletBinding()]
param(
    [Parameter(Position = 0)]
    [ValidateSet('Build', 'Test', 'Bench', 'Demo', 'Package', 'Clean')]
    [string] $Task = 'Build',

    [ValidateSet('Release', 'Debug')]
    [string] $Configuration = 'Release',

    # Test only: run just these Pester files or folders (default: all of tests/), for a quick loop while developing.
    [string[]] $PesterPath,

    # Test only: an xunit --filter expression, or 'none' to skip xunit, for a quick loop while developing.
    [string] $XunitFilter
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = $PSScriptRoot
$ModuleName = 'OrasStaging'
$Manifest = Import-PowerShellDataFile (Join-Path $Root "$ModuleName.psd1")
$Version = $Manifest.ModuleVersion
$OutRoot = Join-Path $Root 'out'
$ModuleOut = Join-Path $OutRoot "$ModuleName/$Version"
$TestKitProject = Join-Path $Root 'tests/OrasStaging.TestKit/OrasStaging.TestKit.csproj'
$TestKitOut = Join-Path $OutRoot 'testkit'

function Invoke-Native {
    # Runs a native command and stops the build when it fails.
    param([string] $FilePath, [string[]] $Arguments)
    & $FilePath @Arguments
    if ($LASTEXITCODE -ne 0) {
        throw "'$FilePath $($Arguments -join ' ')' failed with exit code $LASTEXITCODE."
    }
}

function Install-Prerequisite {
    # The tests and the demo need a real OCI registry and qemu-img (to verify images, not to make them).
    # The benchmark also runs the seed pipeline (curl) and measures peak memory with GNU time.
    param([switch] $ForBench)
    $missing = @()
    if ($ForBench) {
        if (-not (Get-Command curl -ErrorAction Ignore)) { $missing += 'curl' }
        if (-not (Test-Path '/usr/bin/time')) { $missing += 'time' }
        # The qcow2 bench's reflink row makes an XFS file system on a loop device.
        if ($IsLinux -and -not (Get-Command mkfs.xfs -ErrorAction Ignore)) { $missing += 'xfsprogs' }
    }
    if (-not (Test-Path '/usr/bin/docker-registry') -and -not (Get-Command docker-registry -ErrorAction Ignore)) {
        $missing += 'docker-registry'
    }
    if (-not (Get-Command qemu-img -ErrorAction Ignore)) {
        $missing += 'qemu-utils'
    }
    # The device tests format a loop device (mkfs.ext4) to check the mounted-device refusal.
    if ($IsLinux -and -not (Get-Command mkfs.ext4 -ErrorAction Ignore) -and -not (Test-Path '/usr/sbin/mkfs.ext4')) {
        $missing += 'e2fsprogs'
    }
    # The basic-auth registry needs bcrypt htpasswd lines (distribution 2.8 accepts no other hash).
    if (-not (Get-Command htpasswd -ErrorAction Ignore)) {
        $missing += 'apache2-utils'
    }
    # The TestKit pusher and the disk-image tests make compressed inputs with the reference CLIs.
    foreach ($tool in @{ gzip = 'gzip'; zstd = 'zstd'; xz = 'xz-utils'; bzip2 = 'bzip2'; pigz = 'pigz'; igzip = 'isal' }.GetEnumerator()) {
        if (-not (Get-Command $tool.Key -ErrorAction Ignore)) {
            $missing += $tool.Value
        }
    }
    # The native decoders (ISA-L inflate, libzstd) are tested beside the managed ones.
    if ($IsLinux -and -not (Test-Path /usr/lib/*-linux-gnu/libisal.so.2)) { $missing += 'libisal2' }
    if (-not $missing) { return }

    $command = "apt-get install -y $($missing -join ' ')"
    $isRoot = $IsLinux -and ((& id -u) -eq '0')
    if ($isRoot -and (Get-Command apt-get -ErrorAction Ignore)) {
        Write-Host "Installing $($missing -join ', ') ..."
        Invoke-Native apt-get @('update', '-qq')
        Invoke-Native apt-get (@('install', '-y', '-qq') + $missing)
    }
    else {
        throw "Missing test prerequisites: $($missing -join ', '). Run: sudo $command"
    }
}

function Invoke-Build {
    Write-Host "Building $ModuleName $Version ($Configuration) -> $ModuleOut"
    if (Test-Path $ModuleOut) { Remove-Item $ModuleOut -Recurse -Force }
    $null = New-Item -ItemType Directory -Force $ModuleOut

    Invoke-Native dotnet @('publish', (Join-Path $Root "src/$ModuleName/$ModuleName.csproj"),
        '-c', $Configuration, '-o', $ModuleOut, "-p:Version=$Version", '--nologo', '-v', 'quiet')

    # Nothing from the build that pwsh does not load: no deps.json noise, no reference assemblies.
    Get-ChildItem $ModuleOut -Filter '*.deps.json' | Remove-Item -Force
    if ($Configuration -eq 'Release') {
        Get-ChildItem $ModuleOut -Filter '*.pdb' | Remove-Item -Force
    }

    Copy-Item (Join-Path $Root "$ModuleName.psd1") $ModuleOut
    Copy-Item (Join-Path $Root 'LICENSE') $ModuleOut
    $format = Join-Path $Root "src/$ModuleName/$ModuleName.Format.ps1xml"
    if (Test-Path $format) { Copy-Item $format $ModuleOut }

    $helpOut = Join-Path $ModuleOut 'en-US'
    $null = New-Item -ItemType Directory -Force $helpOut
    $about = Join-Path $Root 'docs/en-US/about_OrasStaging.help.txt'
    if (Test-Path $about) { Copy-Item $about $helpOut }
    $helpTool = Join-Path $Root 'tools/New-MamlHelp.ps1'
    if (Test-Path $helpTool) {
        # Runs in a child pwsh so the module loaded for reflection does not stay in this session.
        $pwsh = [Environment]::ProcessPath
        $pwshArgs = @()
        if ((Split-Path $pwsh -Leaf) -like 'dotnet*') {
            # Under `dotnet pwsh`, the process is dotnet and the first argument is pwsh.dll.
            $pwshArgs += [Environment]::GetCommandLineArgs()[0]
        }
        $pwshArgs += @('-NoProfile', '-NonInteractive', '-File', $helpTool,
            '-ModulePath', (Join-Path $ModuleOut "$ModuleName.psd1"),
            '-MarkdownPath', (Join-Path $Root 'docs/en-US'),
            '-OutputPath', (Join-Path $helpOut "$ModuleName.dll-Help.xml"))
        Invoke-Native $pwsh $pwshArgs
    }

    Write-Host "Built $ModuleOut"
}

function Invoke-TestKitBuild {
    Invoke-Native dotnet @('build', $TestKitProject, '-c', $Configuration, '-o', $TestKitOut, '--nologo', '-v', 'quiet')
}

function Get-PesterModulePath {
    $packages = if ($env:NUGET_PACKAGES) { $env:NUGET_PACKAGES } else { Join-Path ([Environment]::GetFolderPath('UserProfile')) '.nuget/packages' }
    $path = Join-Path $packages 'pester/5.7.1/tools/Pester.psd1'
    if (-not (Test-Path $path)) {
        # The test project declares <PackageDownload Include="Pester" />; a restore fetches it.
        Invoke-Native dotnet @('restore', (Join-Path $Root 'tests/OrasStaging.Tests/OrasStaging.Tests.csproj'), '--nologo', '-v', 'quiet')
    }
    if (-not (Test-Path $path)) { throw "Pester 5.7.1 was not found at $path after restore." }
    $path
}

function Invoke-XunitTests {
    $results = Join-Path $OutRoot 'TestResults'
    if (Test-Path $results) { Remove-Item $results -Recurse -Force }
    $filter = if ($XunitFilter) { @('--filter', $XunitFilter) } else { @() }
    & dotnet test (Join-Path $Root 'tests/OrasStaging.Tests/OrasStaging.Tests.csproj') -c $Configuration --nologo `
        --logger 'trx;LogFileName=xunit.trx' --logger 'console;verbosity=normal' --results-directory $results @filter | Out-Host
    $exit = $LASTEXITCODE
    $trx = Get-ChildItem $results -Filter '*.trx' -Recurse -ErrorAction Ignore | Select-Object -First 1
    if (-not $trx) {
        Write-Warning "xunit produced no results (exit code $exit)."
        return [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; NotRun = 0 }
    }
    $counters = ([xml](Get-Content $trx.FullName -Raw)).TestRun.ResultSummary.Counters
    $failed = [int]$counters.failed + [int]$counters.error + [int]$counters.timeout + [int]$counters.aborted
    if ($exit -ne 0 -and $failed -eq 0) { $failed = 1 }
    # xunit's trx counts a skipped test as notExecuted; anything else not run (total - executed) is not-run.
    $skipped = [int]$counters.notExecuted
    $notRun = [math]::Max(0, [int]$counters.total - [int]$counters.executed - $skipped)
    [pscustomobject]@{ Passed = [int]$counters.passed; Failed = $failed; Skipped = $skipped; NotRun = $notRun }
}

function Invoke-PesterTests {
    Import-Module (Get-PesterModulePath) -Force
    $env:ORASSTAGING_MODULE = Join-Path $ModuleOut "$ModuleName.psd1"
    $env:ORASSTAGING_TESTKIT = Join-Path $TestKitOut 'OrasStaging.TestKit.dll'
    $config = New-PesterConfiguration
    $config.Run.Path = if ($PesterPath) { @($PesterPath | ForEach-Object { (Resolve-Path $_).Path }) } else { Join-Path $Root 'tests' }
    $config.Run.PassThru = $true
    $config.Output.Verbosity = 'Detailed'
    $config.TestResult.Enabled = $true
    $config.TestResult.OutputPath = Join-Path $OutRoot 'TestResults/pester.xml'
    $result = Invoke-Pester -Configuration $config
    Remove-Item Env:ORASSTAGING_MODULE, Env:ORASSTAGING_TESTKIT -ErrorAction Ignore
    [pscustomobject]@{
        Passed  = $result.PassedCount
        Failed  = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
        Skipped = $result.SkippedCount
        NotRun  = $result.NotRunCount
    }
}

switch ($Task) {
    'Clean' {
        foreach ($dir in @($OutRoot) + (Get-ChildItem $Root -Recurse -Directory -Include bin, obj | ForEach-Object FullName)) {
            if (Test-Path $dir) { Remove-Item $dir -Recurse -Force }
        }
    }
    'Build' {
        Invoke-Build
    }
    'Test' {
        Install-Prerequisite
        Invoke-Build
        Invoke-TestKitBuild
        $runXunit = $XunitFilter -ne 'none'
        $runPester = -not ($PesterPath -and $PesterPath[0] -eq 'none')
        $none = [pscustomobject]@{ Passed = 0; Failed = 0; Skipped = 0; NotRun = 0 }
        $xunit = if ($runXunit) { Invoke-XunitTests } else { $none }
        $pester = if ($runPester) { Invoke-PesterTests } else { $none }
        # A runner that was asked to run and ran nothing (a broken discovery, an empty filter) is a failure of its own.
        $empty = @()
        if ($runXunit -and $xunit.Passed + $xunit.Failed -eq 0) { $empty += 'xunit' }
        if ($runPester -and $pester.Passed + $pester.Failed -eq 0) { $empty += 'Pester' }
        foreach ($runner in $empty) { Write-Warning "$runner ran 0 tests." }
        $passed = $xunit.Passed + $pester.Passed
        $failed = $xunit.Failed + $pester.Failed + $empty.Count
        Write-Host "xunit: $($xunit.Passed) passed, $($xunit.Failed) failed; Pester: $($pester.Passed) passed, $($pester.Failed) failed"
        Write-Host "$passed passed, $failed failed"
        # On its own line after the closing line, so the closing line keeps its format for whoever parses it.
        Write-Host ("skipped: {0} (xunit {1}, Pester {2}); not run: {3} (xunit {4}, Pester {5})" -f
            ($xunit.Skipped + $pester.Skipped), $xunit.Skipped, $pester.Skipped,
            ($xunit.NotRun + $pester.NotRun), $xunit.NotRun, $pester.NotRun)
        if ($failed -gt 0 -or $passed -eq 0) { exit 1 }
    }
    'Bench' {
        Install-Prerequisite -ForBench
        Invoke-Build
        Invoke-TestKitBuild
        & (Join-Path $Root 'tools/Invoke-Benchmark.ps1') -ModulePath (Join-Path $ModuleOut "$ModuleName.psd1") -TestKitPath (Join-Path $TestKitOut 'OrasStaging.TestKit.dll')
    }
    'Demo' {
        Install-Prerequisite
        Invoke-Build
        Invoke-TestKitBuild
        & (Join-Path $Root 'tools/Invoke-Demo.ps1') -ModulePath (Join-Path $ModuleOut "$ModuleName.psd1") -TestKitPath (Join-Path $TestKitOut 'OrasStaging.TestKit.dll') -DemoPath (Join-Path $Root 'demo')
    }
    'Package' {
        Invoke-Build
        & (Join-Path $Root 'tools/Publish-LocalPackage.ps1') -ModuleOut $ModuleOut -RepositoryPath (Join-Path $OutRoot 'repo')
    }
}
