#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }

BeforeAll {
    $script:ModulePath = $env:ORASSTAGING_MODULE
    $script:ModuleBase = Split-Path $ModulePath
}

Describe 'The module' {
    It 'imports by path' {
        $module = Import-Module $ModulePath -Force -PassThru
        $module.Name | Should -Be 'OrasStaging'
        $module.ModuleType | Should -Be 'Binary'
        Remove-Module OrasStaging
    }

    It 'imports by name when out/ is on PSModulePath' {
        $outRoot = Split-Path (Split-Path $ModuleBase)
        $job = Start-Job -ScriptBlock {
            param($OutRoot)
            $env:PSModulePath = $OutRoot + [IO.Path]::PathSeparator + $env:PSModulePath
            (Import-Module OrasStaging -PassThru).Version.ToString()
        } -ArgumentList $outRoot
        $version = $job | Wait-Job -Timeout 120 | Receive-Job
        $job | Remove-Job -Force
        $version | Should -Be (Import-PowerShellDataFile $ModulePath).ModuleVersion
    }

    It 'exports exactly the cmdlets the assembly defines, and nothing else' {
        $module = Import-Module $ModulePath -Force -PassThru
        $assembly = [System.Reflection.Assembly]::LoadFrom((Join-Path $ModuleBase 'OrasStaging.dll'))
        $defined = $assembly.GetExportedTypes() |
            Where-Object { $_.IsSubclassOf([System.Management.Automation.Cmdlet]) -and -not $_.IsAbstract } |
            ForEach-Object {
                $attr = $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false) | Select-Object -First 1
                "$($attr.VerbName)-$($attr.NounName)"
            } | Sort-Object
        $exported = @(Get-Command -Module OrasStaging | ForEach-Object Name | Sort-Object)
        $manifest = @((Import-PowerShellDataFile $ModulePath).CmdletsToExport | Sort-Object)
        $exported | Should -Be $manifest
        @($defined) | Should -Be $manifest
        $module.ExportedFunctions.Count | Should -Be 0
        $module.ExportedAliases.Count | Should -Be 0
        Remove-Module OrasStaging
    }

    It 'ships no System.Management.Automation copy (pwsh provides it)' {
        Join-Path $ModuleBase 'System.Management.Automation.dll' | Should -Not -Exist
        Join-Path $ModuleBase 'ZstdSharp.dll' | Should -Exist
    }
}
