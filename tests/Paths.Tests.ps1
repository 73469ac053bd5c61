#Requires -Modules @{ ModuleName = 'Pester'; ModuleVersion = '5.7.1' }
# Input paths shared by Expand-DiskImage and Convert-DiskImage (PathResolver.InputFiles): only file system
# paths, resolved against PowerShell's location; folders are not inputs.

BeforeAll {
    Import-Module $env:ORASSTAGING_MODULE -Force
    Import-Module (Join-Path $PSScriptRoot 'TestKit.psm1') -Force
    $script:Work = Join-Path ([IO.Path]::GetTempPath()) ("paths-tests-" + [guid]::NewGuid().ToString('n'))
    $null = New-Item -ItemType Directory -Path $Work
    $raw = Join-Path $Work 'disk.img'
    New-TestDiskImage -Path $raw -Size (1MB + 100) -Seed 5 | Out-Null
    $in = [IO.File]::OpenRead($raw)
    $out = [IO.File]::Create((Join-Path $Work 'disk.img.gz'))
    $gz = [IO.Compression.GZipStream]::new($out, [IO.Compression.CompressionLevel]::Fastest)
    $in.CopyTo($gz); $gz.Dispose(); $in.Dispose()
    Remove-Item $raw
    # A folder that a wildcard for the compressed file also matches.
    $null = New-Item -ItemType Directory -Path (Join-Path $Work 'disk.img.gz.d')
    $script:OldLocation = Get-Location
    $script:OldCwd = [Environment]::CurrentDirectory
}

AfterAll {
    Set-Location $OldLocation
    [Environment]::CurrentDirectory = $OldCwd
    Remove-Item -LiteralPath $Work -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Input and output paths' {
    BeforeEach {
        Set-Location $Work
        # The process's directory is elsewhere: a path taken relative to it would miss.
        [Environment]::CurrentDirectory = [IO.Path]::GetTempPath()
    }

    It 'refuses a path of another provider instead of reading a file of that name' {
        Set-Variable -Name 'orasPathProbe' -Value 'x' -Scope Global
        $null = New-Item -ItemType File -Path (Join-Path ([IO.Path]::GetTempPath()) 'orasPathProbe') -Force
        try {
            $err = $null
            Convert-DiskImage -LiteralPath 'Variable:\orasPathProbe' -DestinationPath out.qcow2 -ErrorVariable err -ErrorAction SilentlyContinue
            $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
            $err[0].Exception.Message | Should -Match 'Variable path'
            Join-Path $Work 'out.qcow2' | Should -Not -Exist
        }
        finally {
            Remove-Variable -Name 'orasPathProbe' -Scope Global
            Remove-Item (Join-Path ([IO.Path]::GetTempPath()) 'orasPathProbe') -Force
        }
    }

    It 'refuses an output path of another provider' {
        $err = $null
        Convert-DiskImage -LiteralPath disk.img.gz -DestinationPath 'Env:\orasOut' -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
    }

    It 'reports a destination on a missing drive as PathNotFound and goes on with the next input' {
        $err = $null
        $out = 'disk.img.gz', 'disk.img.gz' | Convert-DiskImage -DestinationPath 'NoSuchDrive:/x.qcow2' -ErrorVariable err -ErrorAction SilentlyContinue
        $out | Should -BeNullOrEmpty
        @($err).Count | Should -Be 2
        $err[0].FullyQualifiedErrorId | Should -Be 'PathNotFound,OrasStaging.Commands.ConvertDiskImageCommand'
        $err[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'takes only the files a wildcard matches, not the folders' {
        $out = Expand-DiskImage -Path 'disk.img.g*' -DestinationPath (Join-Path $Work 'wild.img') -ErrorVariable err -ErrorAction SilentlyContinue
        @($out).Count | Should -Be 1
        $out.Name | Should -Be 'wild.img'
        $err | Should -BeNullOrEmpty
    }

    It 'refuses a folder named outright' {
        $err = $null
        Expand-DiskImage -LiteralPath 'disk.img.gz.d' -DestinationPath x.img -ErrorVariable err -ErrorAction SilentlyContinue
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ExpandDiskImageCommand'
        Join-Path $Work 'x.img' | Should -Not -Exist
    }

    It 'refuses a folder as the destination file with the same id as a folder input' {
        $err = $null
        Convert-DiskImage -LiteralPath 'disk.img.gz' -DestinationPath 'disk.img.gz.d' -Format raw -ErrorVariable err -ErrorAction SilentlyContinue |
            Should -BeNullOrEmpty
        $err[0].FullyQualifiedErrorId | Should -Be 'InvalidArgument,OrasStaging.Commands.ConvertDiskImageCommand'
        @(Get-ChildItem -LiteralPath (Join-Path $Work 'disk.img.gz.d') -Force).Count | Should -Be 0
    }
}

Describe 'Azure Pipelines message escaping' {
    It 'keeps a multi-line message on one logging-command line' {
        # The one writer of ##vso lines is internal; reach it through the module's assembly.
        $type = [OrasStaging.Commands.OrasCmdletBase].Assembly.GetType('OrasStaging.Commands.AzurePipelines', $true)
        $escape = $type.GetMethod('Escape', [Reflection.BindingFlags]'NonPublic, Static')
        $escape.Invoke($null, @("qemu-img failed: 100%`r`nline two")) | Should -Be 'qemu-img failed: 100%AZP25%0D%0Aline two'
    }
}
