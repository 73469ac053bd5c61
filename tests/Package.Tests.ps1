#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# build.ps1 -Task Package end to end: the .nupkg that tools/Publish-LocalPackage.ps1 writes installs with
# Install-PSResource from a local file repository and imports by name. All of it runs in a child pwsh whose HOME
# and XDG_DATA_HOME (repository list, CurrentUser modules) are temporary, so the user's setup is never touched.

BeforeAll {
    $script:ModuleOut = Split-Path $env:ORASSTAGING_MODULE
    $script:RepoRoot = Split-Path $PSScriptRoot
    $script:PublishScript = Join-Path $RepoRoot 'tools/Publish-LocalPackage.ps1'

    function Invoke-ChildPwsh([string] $ScriptPath, [string[]] $Arguments, [hashtable] $Environment, [int] $TimeoutSeconds) {
        $pwsh = [Environment]::ProcessPath
        $info = [System.Diagnostics.ProcessStartInfo]::new($pwsh)
        if ((Split-Path $pwsh -Leaf) -like 'dotnet*') { $info.ArgumentList.Add([Environment]::GetCommandLineArgs()[0]) }
        foreach ($a in @('-NoProfile', '-NonInteractive', '-File', $ScriptPath) + $Arguments) { $info.ArgumentList.Add($a) }
        foreach ($key in $Environment.Keys) { $info.Environment[$key] = $Environment[$key] }
        $info.WorkingDirectory = $Work
        $info.RedirectStandardOutput = $true
        $info.RedirectStandardError = $true
        $process = [System.Diagnostics.Process]::Start($info)
        $stdout = $process.StandardOutput.ReadToEndAsync()
        $stderr = $process.StandardError.ReadToEndAsync()
        if (-not $process.WaitForExit($TimeoutSeconds * 1000)) {
            $process.Kill($true)
            throw "child pwsh did not finish within $TimeoutSeconds s"
        }
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; StdOut = $stdout.Result; StdErr = $stderr.Result }
    }

    $script:Work = Join-Path $TestDrive 'package'
    # Existing folders: .NET on Unix reports a missing special folder as '', and NuGet (under PSResourceGet) then
    # writes NuGet/NuGet.Config into the current directory.
    $null = New-Item -ItemType Directory -Force (Join-Path $Work 'data'), (Join-Path $Work 'config'),
        (Join-Path $Work 'home/.local/share'), (Join-Path $Work 'home/.config')
    $child = Join-Path $TestDrive 'install.ps1'
    Set-Content -LiteralPath $child -Value @'
param([string] $PublishScript, [string] $ModuleOut, [string] $Work)
$ErrorActionPreference = 'Stop'
$suffix = [guid]::NewGuid().ToString('n').Substring(0, 8)
$repo = Join-Path $Work 'repo'
$package = & $PublishScript -ModuleOut $ModuleOut -RepositoryPath $repo -RepositoryName "OrasStagingPublish$suffix" 6>$null
$name = "OrasStagingTest$suffix"
Register-PSResourceRepository -Name $name -Uri $repo -Trusted
try {
    if ($IsWindows) {
        # CurrentUser on Windows is Documents\PowerShell\Modules, which an environment variable cannot move.
        $modules = Join-Path $Work 'Modules'
        $null = New-Item -ItemType Directory -Force $modules
        Save-PSResource -Name OrasStaging -Repository $name -Path $modules -TrustRepository
    }
    else {
        Install-PSResource -Name OrasStaging -Repository $name -Scope CurrentUser -TrustRepository
        # PSResourceGet derives CurrentUser from $HOME on Unix (pwsh's own module path from XDG_DATA_HOME).
        $modules = Join-Path $HOME '.local/share/powershell/Modules'
    }
    $registered = @(Get-PSResourceRepository | ForEach-Object Name)
}
finally {
    Unregister-PSResourceRepository -Name $name
}
$env:PSModulePath = $modules + [IO.Path]::PathSeparator + $env:PSModulePath
Import-Module OrasStaging
$module = Get-Module OrasStaging
$errorId = $null
if (Get-Command Resolve-OrasImage -Module OrasStaging -ErrorAction Ignore) {
    Resolve-OrasImage 'not a reference' -ErrorAction SilentlyContinue -ErrorVariable failures | Out-Null
    $errorId = @($failures)[0].FullyQualifiedErrorId
}
[pscustomobject]@{
    Package        = $package.Name
    ModuleBase     = $module.ModuleBase
    Version        = $module.Version.ToString()
    Commands       = @(Get-Command -Module OrasStaging | ForEach-Object Name)
    AboutFound     = [bool]((Get-Help about_OrasStaging | Out-String) -match 'TROUBLESHOOTING BY ERROR ID')
    FormatViews    = @((Get-FormatData -TypeName OrasStaging.OrasImage -PowerShellVersion $PSVersionTable.PSVersion).FormatViewDefinition).Count
    ErrorId        = $errorId
    RegisteredDuringInstall = $registered
    RegisteredAfter = @(Get-PSResourceRepository | ForEach-Object Name)
} | ConvertTo-Json -Compress
'@
    $script:Run = Invoke-ChildPwsh $child @('-PublishScript', $PublishScript, '-ModuleOut', $ModuleOut, '-Work', $Work) `
        @{ XDG_DATA_HOME = (Join-Path $Work 'data'); XDG_CONFIG_HOME = (Join-Path $Work 'config'); HOME = (Join-Path $Work 'home') } 300
    $script:Result = if ($Run.ExitCode -eq 0) { ($Run.StdOut -split '\r?\n' | Where-Object { $_ -like '{*' } | Select-Object -Last 1) | ConvertFrom-Json }
    $script:Expected = Import-PowerShellDataFile $env:ORASSTAGING_MODULE
}

Describe 'The package' {
    It 'publishes, installs and imports without error' {
        $Run.ExitCode | Should -Be 0 -Because "$($Run.StdErr)`n$($Run.StdOut)"
        $Result | Should -Not -BeNullOrEmpty
    }

    It 'is a .nupkg in the local file repository' {
        $Result.Package | Should -Be "OrasStaging.$($Expected.ModuleVersion).nupkg"
        Join-Path $Work "repo/$($Result.Package)" | Should -Exist
    }

    It 'imports by name from the temporary install location, not from the build output' {
        $Result.Version | Should -Be $Expected.ModuleVersion
        $Result.ModuleBase | Should -BeLike "$Work*"
        $Result.ModuleBase | Should -Not -BeLike "$ModuleOut*"
    }

    It 'exposes exactly the exported cmdlets' {
        @($Result.Commands | Sort-Object) | Should -Be @($Expected.CmdletsToExport | Sort-Object)
    }

    It 'carries the help, the about topic and the format views' {
        $Result.AboutFound | Should -BeTrue
        $Result.FormatViews | Should -BeGreaterOrEqual 2
    }

    It 'runs a cmdlet from the installed module' {
        $Result.ErrorId | Should -Be 'ReferenceInvalid,OrasStaging.Commands.ResolveOrasImageCommand'
    }

    It 'leaves nothing in the working folder (PSResourceGet and NuGet fall back to it when a data folder is missing)' {
        foreach ($folder in $Work, $RepoRoot) {
            Join-Path $folder 'NuGet' | Should -Not -Exist
            Join-Path $folder 'PSResourceGet' | Should -Not -Exist
        }
    }

    It 'leaves no repository registered' {
        @($Result.RegisteredDuringInstall -like 'OrasStagingTest*').Count | Should -Be 1
        @($Result.RegisteredAfter -like 'OrasStaging*') | Should -BeNullOrEmpty
    }
}
