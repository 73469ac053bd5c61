#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Manifest hygiene: the built manifest is valid, exports exactly the cmdlets, and its version, release notes,
# the assembly version and CHANGELOG.md tell one story.

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    $script:ModuleBase = Split-Path $ModulePath
    $script:RepoRoot = Split-Path $PSScriptRoot
    $script:Data = Import-PowerShellDataFile $ModulePath
    $script:Version = $Data.ModuleVersion
    $script:Changelog = Get-Content (Join-Path $RepoRoot 'CHANGELOG.md') -Raw

    function Get-ChangelogSection([string] $Text, [string] $Version) {
        # The text under "## [<version>]" up to the next "## [" heading.
        $match = [regex]::Match($Text, "(?ms)^## \[$([regex]::Escape($Version))\][^\n]*\n(.*?)(?=^## \[|\z)")
        if ($match.Success) { $match.Groups[1].Value } else { $null }
    }
}

AfterAll {
    Remove-Module OrasStaging -ErrorAction Ignore
}

Describe 'The module manifest' {
    It 'passes Test-ModuleManifest' {
        $info = Test-ModuleManifest $ModulePath -ErrorAction Stop
        $info.Name | Should -Be 'OrasStaging'
        $info.Version.ToString() | Should -Be $Version
    }

    It 'is the source manifest, copied unchanged into the build' {
        (Get-FileHash $ModulePath).Hash | Should -Be (Get-FileHash (Join-Path $RepoRoot 'OrasStaging.psd1')).Hash
    }

    It 'exports exactly the cmdlets of CmdletsToExport, each one defined by the assembly, and nothing else' {
        $module = Import-Module $ModulePath -Force -PassThru
        @($module.ExportedCmdlets.Keys | Sort-Object) | Should -Be @($Data.CmdletsToExport | Sort-Object)
        foreach ($name in $Data.CmdletsToExport) {
            $command = Get-Command $name -Module OrasStaging -CommandType Cmdlet
            $command.ImplementingType.Assembly.GetName().Name | Should -Be 'OrasStaging'
            $command.ImplementingType.Namespace | Should -Be 'OrasStaging.Commands'
            $command.ImplementingType.Name | Should -Be "$($name -replace '-', '')Command"
        }
        @($Data.FunctionsToExport).Count | Should -Be 0
        @($Data.AliasesToExport).Count | Should -Be 0
        @($Data.VariablesToExport).Count | Should -Be 0
        Remove-Module OrasStaging
    }

    It 'declares PowerShell 7.4 Core and the format file it ships' {
        $Data.PowerShellVersion | Should -Be '7.4'
        $Data.CompatiblePSEditions | Should -Be @('Core')
        $Data.RootModule | Should -Be 'OrasStaging.dll'
        $Data.FormatsToProcess | Should -Be @('OrasStaging.Format.ps1xml')
        foreach ($file in $Data.FormatsToProcess) { Join-Path $ModuleBase $file | Should -Exist }
    }

    It 'has the gallery metadata: tags, project, licence' {
        $psData = $Data.PrivateData.PSData
        $psData.Tags | Should -Contain 'PSEdition_Core'
        $psData.ProjectUri | Should -Match '^https://'
        $psData.LicenseUri | Should -Match '^https://'
        Join-Path $ModuleBase 'LICENSE' | Should -Exist
    }

    It 'builds the assembly with the module version' {
        $assembly = [System.Reflection.AssemblyName]::GetAssemblyName((Join-Path $ModuleBase 'OrasStaging.dll'))
        $assembly.Version.ToString(3) | Should -Be ([version]$Version).ToString(3)
    }
}

Describe 'Version, release notes and CHANGELOG.md' {
    It 'has release notes that name the version' {
        $Data.PrivateData.PSData.ReleaseNotes | Should -Match ([regex]::Escape($Version))
    }

    It 'has a CHANGELOG heading for the version, and it is the newest' {
        $Changelog | Should -Match "(?m)^## \[$([regex]::Escape($Version))\]"
        $first = [regex]::Match($Changelog, '(?m)^## \[([^\]]+)\]').Groups[1].Value
        $first | Should -Be $Version
    }

    It 'mentions every exported cmdlet in the CHANGELOG section of the version' {
        $section = Get-ChangelogSection $Changelog $Version
        $section | Should -Not -BeNullOrEmpty
        foreach ($name in $Data.CmdletsToExport) {
            $section | Should -Match ([regex]::Escape($name)) -Because "the release that ships $name says so"
        }
    }
}
